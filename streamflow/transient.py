"""Which Redis errors pass: a worker's loops (and a cancel watcher) log them, wait and go on,
where any other error is a bug that must stop the worker loudly."""

from __future__ import annotations

import os

from redis.exceptions import ClusterError, ResponseError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

REDIS_ERRORS = (RedisConnectionError, RedisTimeoutError, ConnectionError, ClusterError,
                TryAgainError)
"""Errors that pass (a lost connection; on Cluster, a slot being moved or failing over)."""


def lost_connection(exc: BaseException) -> bool:
    """Whether ``exc`` is a lost connection: a Redis error of ``REDIS_ERRORS``, or the
    AttributeError/TypeError redis-py's asyncio client leaks from inside itself when a
    connection is torn down under a write (seen when a Cluster master dies; redis-py #4287)."""
    if isinstance(exc, REDIS_ERRORS):
        return True
    if not isinstance(exc, AttributeError | TypeError):
        return False
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and f"{os.sep}redis{os.sep}" in tb.tb_frame.f_code.co_filename


MAYBE_LOST = (*REDIS_ERRORS, AttributeError, TypeError)
"""What a caller catches to survive a lost connection; ``lost_connection`` tells which of them
are one (the others are re-raised)."""

PASSING = (*MAYBE_LOST, ResponseError)
"""What a background loop catches; ``passes`` tells which of them it survives."""


def passes(exc: BaseException) -> bool:
    """Whether a background loop survives ``exc``: an error reply, or a lost connection
    (including redis-py's leaked AttributeError/TypeError, see ``lost_connection``)."""
    return isinstance(exc, ResponseError) or lost_connection(exc)
