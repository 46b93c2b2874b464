"""Which errors a worker loop takes for a lost connection (and retries) rather than a bug."""

from __future__ import annotations

import redis.asyncio.connection
from redis.exceptions import ClusterError, ConnectionError, ResponseError, TryAgainError

from streamflow.transient import PASSING, lost_connection, passes


def _raised_inside_redis_py() -> AttributeError:
    # compile code that claims redis-py's connection module as its file, as a frame of it would
    code = compile("None.writelines([])", redis.asyncio.connection.__file__, "exec")
    try:
        exec(code)
    except AttributeError as exc:
        return exc
    raise AssertionError("unreachable")


def test_redis_errors_and_redis_py_transport_glitches_are_a_lost_connection() -> None:
    assert lost_connection(ConnectionError("gone"))
    assert lost_connection(ClusterError("TTL exhausted."))
    assert lost_connection(TryAgainError("TRYAGAIN"))
    assert lost_connection(_raised_inside_redis_py())


def test_our_own_attribute_errors_are_not() -> None:
    try:
        None.writelines([])  # type: ignore[attr-defined]
    except AttributeError as exc:
        assert not lost_connection(exc)
    assert not lost_connection(ValueError("x"))


def test_background_loops_survive_what_the_fetcher_survives() -> None:
    # the heartbeat loop died on redis-py's leaked AttributeError while a Cluster slot moved
    leaked = _raised_inside_redis_py()
    assert isinstance(leaked, PASSING) and passes(leaked)
    assert passes(ResponseError("NOGROUP")) and passes(ConnectionError("gone"))
    try:
        None.writelines([])  # type: ignore[attr-defined]
    except AttributeError as exc:
        assert not passes(exc)  # a bug of ours still stops the worker


def test_the_cancel_watcher_survives_them_too() -> None:
    from streamflow.cancel import _passes

    assert _passes(_raised_inside_redis_py())  # before: it stopped the worker (Cluster failover)
    assert _passes(ConnectionError("gone")) and _passes(ResponseError("LOADING"))
    assert not _passes(ValueError("ours"))
