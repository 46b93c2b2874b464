"""The Lua moves as a Redis Functions library: its shape, how a client settles on FCALL or
EVALSHA, errors raised inside a function, a full Redis, replication and stale libraries.
(Every move's behaviour is tested in both modes by test_scripts.py.)"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.exceptions import (
    NoPermissionError,
    OutOfMemoryError,
    RedisClusterException,
    ResponseError,
)

from streamflow import StreamflowSettings, functions, scripts
from streamflow.connection import FastCluster, create_client
from streamflow.keys import QueueKeys
from tests.servers import ClusterTopology, RedisProcess
from tests.support import wait_until

pytestmark = pytest.mark.anyio

ALL = "~* &* +@all"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    """A private server: the tests flush its functions, change users and fill its memory."""
    with RedisProcess(tmp_path_factory.mktemp("functions"),
                      config=["maxmemory-policy noeviction"]) as process:
        yield process


@pytest.fixture
async def admin(server: RedisProcess) -> AsyncIterator[Any]:
    client = create_client(StreamflowSettings.from_url(server.url).redis, max_connections=4)
    await client.function_flush()
    try:
        yield client
    finally:
        await client.config_set("maxmemory", 0)
        await client.aclose()


def user_client(server: RedisProcess, name: str, rules: str, lua: str = "auto") -> Any:
    with server.client() as root:
        root.execute_command("ACL", "SETUSER", name, "reset", "on", ">pw", *rules.split())
    settings = StreamflowSettings.from_url(f"redis://{name}:pw@{server.host}:{server.port}/0")
    settings.redis.lua = lua  # type: ignore[assignment]
    return create_client(settings.redis, max_connections=4)


def trim_call(keys: QueueKeys) -> tuple[list[str], list[Any]]:
    return [keys.level("normal")], ["="]


# ------------------------------------------------------------------------------ the library


def test_library_registers_every_move_under_its_version() -> None:
    library = scripts.LIBRARY
    assert library.name == f"streamflow_{library.version}"
    assert library.text.startswith(f"#!lua name={library.name}\n")
    for script in scripts.SCRIPTS.values():
        assert script.function == f"{script.name}_{library.version}"
        assert f"function_name='{script.function}'" in library.text
    assert set(functions.ALLOW_OOM) <= set(scripts.SCRIPTS)


def test_library_lines_map_back_to_each_script() -> None:
    lines = scripts.LIBRARY.text.splitlines()
    for script in scripts.SCRIPTS.values():
        body = script.body.splitlines()
        for number in (1, len(body)):
            start = scripts.LIBRARY.starts[script.function][1]
            assert lines[start + number - 1] == body[number - 1]
            assert scripts.locate(script.function, start + number) == (script, number)
        assert scripts.locate(script.sha, 7) == (script, 7)


def test_flags_and_version_follow_the_bodies() -> None:
    plain = functions.build({"add_jobs": "return 1", "fetch_jobs": "return 2"})
    assert "flags={}" in plain.text and "flags={'allow-oom'}" in plain.text
    shebang = functions.build({"add_jobs": "#!lua flags=no-writes\nreturn 1",
                               "fetch_jobs": "return 2"})
    assert "function_name='add_jobs_" + shebang.version + "', flags={'no-writes'}" in (
        shebang.text)
    assert "\n--#!lua flags=no-writes\nreturn 1\nend}" in shebang.text  # EVAL-only line
    assert plain.version != shebang.version
    assert functions.build({"add_jobs": "return 1", "fetch_jobs": "return 2"}) == plain


# ------------------------------------------------------------------------ settling the mode


async def test_the_first_call_loads_the_library_when_the_user_may(admin: Any) -> None:
    keys = QueueKeys("fn-first")
    assert await scripts.call(admin, scripts.TRIM_STREAM, *trim_call(keys)) == 0
    assert await admin.function_list(library=scripts.LIBRARY.name)
    stats = await admin.info("commandstats")
    assert "cmdstat_evalsha" not in stats and stats["cmdstat_fcall"]["calls"] >= 2


async def test_fcall_only_user_without_the_library_gets_one_line(server: RedisProcess,
                                                                 admin: Any) -> None:
    client = user_client(server, "fn-caller", "~* +fcall +exists +xinfo +xpending")
    try:
        with pytest.raises(scripts.LibraryNotLoaded) as refused:
            await scripts.load_scripts(client)
        message = str(refused.value)
        assert "\n" not in message and "'function|load' command" in message
        assert scripts.LIBRARY.name in message and "streamflow load-functions" in message
        assert await scripts.load_functions(admin)
        assert not await scripts.load_functions(admin)  # already there
        assert await scripts.load_scripts(client) == "fcall"
        keys = QueueKeys("fn-caller")
        assert await scripts.call(client, scripts.TRIM_STREAM, *trim_call(keys)) == 0
    finally:
        await client.aclose()


async def test_a_user_without_fcall_falls_back_to_evalsha(server: RedisProcess,
                                                          admin: Any) -> None:
    # An ACL written before the functions library: EVALSHA and SCRIPT LOAD, no FCALL.
    client = user_client(server, "fn-legacy", "~* +evalsha +script|load +exists +ping")
    try:
        assert await scripts.load_scripts(client) == "evalsha"
        keys = QueueKeys("fn-legacy")
        assert await scripts.call(client, scripts.TRIM_STREAM, *trim_call(keys)) == 0
    finally:
        await client.aclose()


async def test_a_server_without_functions_gets_evalsha(tmp_path: Path) -> None:
    # Redis 6.2 has no FCALL: renaming it away answers "unknown command", as 6.2 does.
    with RedisProcess(tmp_path, config=['rename-command FCALL ""']) as old:
        client = create_client(StreamflowSettings.from_url(old.url).redis, max_connections=4)
        try:
            keys = QueueKeys("fn-old")
            assert await scripts.call(client, scripts.TRIM_STREAM, *trim_call(keys)) == 0
            assert await scripts.pipeline(client, [scripts.TRIM_STREAM.command(
                *trim_call(keys))] * 2) == [0, 0]
            assert await scripts.load_scripts(client) == "evalsha"
        finally:
            await client.aclose()
        forced = StreamflowSettings.from_url(old.url)
        forced.redis.lua = "fcall"
        client = create_client(forced.redis, max_connections=4)
        try:
            with pytest.raises(ResponseError, match="unknown command"):
                await scripts.load_scripts(client)
        finally:
            await client.aclose()


async def test_a_refusal_inside_a_function_names_the_command_and_line(
        server: RedisProcess, admin: Any) -> None:
    await scripts.load_functions(admin)
    keys = QueueKeys("fn-noperm")
    client = user_client(server, "fn-noxtrim", "~* +fcall +exists +xinfo +xpending")
    try:
        await admin.xgroup_create(keys.level("normal"), "workers", id="0", mkstream=True)
        entry = await admin.xadd(keys.level("normal"), {"n": "j"})
        await admin.xreadgroup("workers", "c", {keys.level("normal"): ">"})
        await admin.xack(keys.level("normal"), "workers", entry)  # now there is one to trim
        with pytest.raises(NoPermissionError) as refused:
            await scripts.call(client, scripts.TRIM_STREAM, *trim_call(keys))
        message = str(refused.value)
        assert "no permissions to run the 'xtrim' command (called by the trim_stream script, "\
            "line " in message, message
        number = int(message.split("line ")[1].split(")")[0])
        assert "XTRIM" in scripts.TRIM_STREAM.body.splitlines()[number - 1]
    finally:
        await client.aclose()


# ------------------------------------------------------------------------------ a full Redis


async def test_on_a_full_redis_workers_moves_run_and_adds_are_refused(admin: Any) -> None:
    keys = QueueKeys("fn-full")
    stream = keys.level("normal")
    await admin.xgroup_create(stream, "workers", id="0", mkstream=True)
    await admin.xadd(stream, {"n": "j"})
    await scripts.load_functions(admin)
    await admin.config_set("maxmemory", 1)  # every write that may grow memory is refused
    assert await scripts.call(admin, scripts.TRIM_STREAM, *trim_call(keys)) == 0  # allow-oom
    add = scripts.ADD_JOBS.command(
        [keys.delayed, keys.jobs, keys.events, *keys.streams],
        [0, len(keys.levels), "0", 10, 1000, *keys.levels])
    with pytest.raises(OutOfMemoryError, match=r"^command not allowed when used memory"):
        await admin.execute_command(*("FCALL", scripts.ADD_JOBS.function, *add[2:]))


OPTIONAL_WRITES = scripts._expand("""local rcall = redis.call
--- @include "full_redis"
optional("XADD", KEYS[2], "*", "e", "optional")
redis.call("XADD", KEYS[1], "*", "required", "1")
return full and 1 or 0
""")
"""A move built on lua/includes/full_redis.lua, as the ack moves are: its first write is
optional, sent by redis.pcall, and an OOM answer there means "Redis is full: skip the optional
writes"."""


async def test_a_move_with_optional_writes_skips_them_on_a_full_redis(
        admin: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    library = functions.build({"complete_jobs": OPTIONAL_WRITES})
    plain, full = library.functions["complete_jobs"], library.full["complete_jobs"]
    assert f"function_name='{plain}', flags={{}}" in library.text
    assert f"function_name='{full}', flags={{'allow-oom'}}" in library.text
    assert library.locate(full, library.starts[full][1] + 12) == ("complete_jobs", 12)
    move = scripts.Script(name="complete_jobs", body=OPTIONAL_WRITES, sha="0" * 40, nkeys=2,
                          variadic=False, coded=False, function=plain, full_function=full)
    await admin.function_load(library.text)
    keys = ["fn-opt:required", "fn-opt:events"]
    assert await scripts.call(admin, move, keys, []) == 0  # not full: both writes
    await admin.config_set("maxmemory", 1)
    assert await scripts.call(admin, move, keys, []) == 1  # full: the required write only
    monkeypatch.setitem(scripts._FULL, plain, full)  # what SCRIPTS registers for real moves
    assert await scripts.pipeline(admin, [move.command(keys, [])] * 2 + [("PING",)]) == [
        1, 1, True]
    await admin.config_set("maxmemory", 0)
    assert (await admin.xlen(keys[0]), await admin.xlen(keys[1])) == (4, 1)


# ------------------------------------------------------------------ replication, old versions


async def test_a_promoted_replica_keeps_the_library(server: RedisProcess, admin: Any,
                                                    tmp_path: Path) -> None:
    await scripts.load_functions(admin)
    with RedisProcess(tmp_path, config=[f"replicaof {server.host} {server.port}"]) as replica:
        with replica.client() as direct:
            await wait_until(lambda: bool(direct.function_list(library=scripts.LIBRARY.name)))
            direct.execute_command("REPLICAOF", "NO", "ONE")
        promoted = user_client(replica, "fn-promoted", "~* +fcall +exists +xinfo")
        try:  # a user that may not load anything: the library came by replication
            assert await scripts.load_scripts(promoted) == "fcall"
            keys = QueueKeys("fn-promoted")
            assert await scripts.call(promoted, scripts.TRIM_STREAM, *trim_call(keys)) == 0
        finally:
            await promoted.aclose()


async def test_prune_deletes_other_versions_only(admin: Any) -> None:
    old = "#!lua name=streamflow_000000000000\nredis.register_function('x_0', function() end)"
    await admin.function_load(old)
    await admin.function_load("#!lua name=other_app\nredis.register_function('y', function() end)")
    await scripts.load_functions(admin)
    assert await scripts.prune_functions(admin) == ["streamflow_000000000000"]
    names = {entry[1] for entry in await admin.function_list()}
    assert names == {scripts.LIBRARY.name.encode(), b"other_app"}



# ----------------------------------------------------------------------------------- Cluster


async def test_cluster_routes_fcall_by_its_keys_without_asking_the_server() -> None:
    client = FastCluster(host="127.0.0.1", port=1)  # routing needs no connection
    keys = QueueKeys("fn-slot")
    command = scripts.TRIM_STREAM.command(*trim_call(keys))
    assert await client._determine_slot(*command) == client.keyslot(keys.level("normal"))
    with pytest.raises(RedisClusterException, match="same key slot"):
        await client._determine_slot("FCALL", "f", 2, "{a}x", "{b}y")


async def test_every_primary_gets_the_library(cluster_topology: ClusterTopology) -> None:
    settings = StreamflowSettings.from_url(cluster_topology.url)
    settings.redis.cluster = True
    client = create_client(settings.redis, max_connections=8)
    try:
        assert await scripts.load_scripts(client) == "fcall"
        for name in ("fn-a", "fn-b", "fn-c", "fn-d"):
            keys = QueueKeys(name)
            assert await scripts.pipeline(client, [scripts.TRIM_STREAM.command(
                *trim_call(keys))] * 2) == [0, 0]
    finally:
        await client.aclose()
    for node in cluster_topology.nodes:
        with node.client() as direct:
            assert direct.function_list(library=scripts.LIBRARY.name), node
            assert "cmdstat_command|getkeys" not in direct.info("commandstats"), node
