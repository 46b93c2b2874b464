"""The server fixtures themselves: each kind of topology is real and behaves as Redis does."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry
from redis.sentinel import Sentinel

from tests import servers
from tests.servers import (
    HOST,
    SENTINEL_SERVICE,
    ClusterTopology,
    RedisProcess,
    RedisServer,
    SentinelTopology,
    ServerStartError,
    TlsFiles,
    free_port,
)

NO_RETRY = Retry(NoBackoff(), 0)


def test_standalone_answers_and_never_evicts(redis_server: RedisServer, redis_url: str) -> None:
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        assert client.ping()
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    assert redis_url.startswith("redis://")
    assert str(redis_server.port) in redis_url


def test_queue_names_are_unique(queue_name: str) -> None:
    assert queue_name.startswith("t-")
    assert len(queue_name) == 14


@pytest.mark.parametrize("hard", [False, True], ids=["sigterm", "sigkill"])
def test_aof_restart_keeps_stream_entry(tmp_path: Path, queue_name: str, hard: bool) -> None:
    stream = f"sf:{{{queue_name}}}:p:normal"
    with RedisProcess(tmp_path, appendonly=True, config=["appendfsync always"]) as server:
        port, pid = server.port, server.pid
        with server.client() as client:
            entry_id = client.xadd(stream, {"job": "1"})
        server.restart(hard=hard)
        assert (server.port, server.running) == (port, True)
        assert server.pid != pid
        with server.client() as client:
            assert client.xlen(stream) == 1
            assert client.xrange(stream)[0][0] == entry_id
    assert not server.running


def test_failed_start_reports_log_tail(tmp_path: Path) -> None:
    server = RedisProcess(tmp_path, config=["no-such-directive yes"])
    with pytest.raises(ServerStartError, match="no-such-directive"):
        server.start()
    assert not server.running


def test_port_taken_before_start_is_picked_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as squatter:
        squatter.bind((HOST, 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        picks = iter([taken])
        monkeypatch.setattr(servers, "free_port", lambda: next(picks, None) or free_port())
        with RedisProcess(tmp_path) as server:
            assert server.port != taken
            with server.client() as client:
                assert client.ping()


def test_sentinel_failover_promotes_replica(sentinel_topology: SentinelTopology) -> None:
    topology = sentinel_topology
    old_master, old_replica = topology.master.address, topology.replica.address
    assert topology.master_address() == old_master
    with topology.master.client() as client:
        client.set("before-failover", "1")
        assert client.wait(1, 2000) == 1

    assert topology.kill_master() == old_master
    new_master = topology.wait_for_failover(timeout=30)

    assert new_master == old_replica
    sentinel = Sentinel(topology.sentinel_addresses, socket_timeout=1)
    master = sentinel.master_for(SENTINEL_SERVICE, socket_timeout=1)
    try:
        assert master.get("before-failover") == b"1"
        assert master.set("after-failover", "1")
    finally:
        master.close()
        for connection in sentinel.sentinels:
            connection.close()


def test_cluster_routes_hash_tags(cluster_topology: ClusterTopology) -> None:
    topology = cluster_topology
    nodes = [ClusterNode(host, port) for host, port in topology.startup_nodes]
    with RedisCluster(startup_nodes=nodes, decode_responses=True) as client:
        info = client.cluster_info()
        assert info["cluster_state"] == "ok"
        assert int(info["cluster_known_nodes"]) == 3

        same_tag = ["sf:{q}:p:high", "sf:{q}:p:normal", "sf:{q}:delayed"]
        assert len({client.keyslot(key) for key in same_tag}) == 1
        for key in same_tag:
            client.set(key, key)
        # keys of one tag share a slot, so a multi-key command on one node works
        assert client.execute_command("MGET", *same_tag) == same_tag

        tagged = [f"sf:{{q{index}}}:meta" for index in range(30)]
        for key in tagged:
            client.set(key, "1")
        owners = {client.get_node_from_key(key).name for key in tagged}
        assert len(owners) == 3, "slots are spread over all three masters"
        assert client.mget_nonatomic(tagged) == ["1"] * len(tagged)
    assert topology.url == f"redis://{HOST}:{topology.nodes[0].port}/0"


def test_tls_with_the_right_ca(tls_redis_server: RedisProcess, tls_files: TlsFiles) -> None:
    assert tls_redis_server.url.startswith("rediss://")
    with redis.Redis.from_url(
        tls_redis_server.url, ssl_ca_certs=str(tls_files.ca), socket_timeout=2
    ) as client:
        assert client.ping()


def test_tls_with_a_wrong_ca_fails(tls_redis_server: RedisProcess, tls_files: TlsFiles) -> None:
    with (
        redis.Redis.from_url(
            tls_redis_server.url,
            ssl_ca_certs=str(tls_files.wrong_ca),
            socket_timeout=2,
            retry=NO_RETRY,
        ) as client,
        pytest.raises(redis.ConnectionError) as caught,
    ):
        client.ping()
    assert isinstance(caught.value.__context__, ssl.SSLCertVerificationError)


def test_tls_server_refuses_plaintext(tls_redis_server: RedisProcess) -> None:
    with (
        redis.Redis(
            host=HOST,
            port=tls_redis_server.port,
            socket_timeout=1,
            retry=NO_RETRY,
        ) as client,
        pytest.raises(redis.ConnectionError),
    ):
        client.ping()


def test_free_ports_never_hands_out_a_port_twice() -> None:
    # a server's port is picked when it is made, not when it listens: a sentinel made after
    # its master (not yet listening) once got the master's port
    from tests.servers import free_port, free_ports

    seen = [free_port() for _ in range(200)] + free_ports(200)
    assert len(set(seen)) == len(seen)
