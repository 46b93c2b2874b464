"""The promoter: due members of the delayed set -> their level streams (one Lua script)."""

from __future__ import annotations

import logging
import time
from typing import Any

from . import scripts
from .keys import QueueKeys

log = logging.getLogger("streamflow.scheduler")


async def promote_due(client: Any, keys: QueueKeys, *, limit: int = 1000, emit: bool = True,
                      events_maxlen: int = 10_000, now_ms: int | None = None,
                      dead_retention: list[Any] | None = None) -> tuple[int, int]:
    """Move up to ``limit`` due jobs; returns (moved, next due ms or -1 when none is left).

    A delayed record that does not decode is dead-lettered (reason ``malformed``) and logged;
    the other jobs move on.
    """
    now = int(time.time() * 1000) if now_ms is None else now_ms
    moved, next_due, dead = await scripts.call(
        client, scripts.PROMOTE_DUE,
        [keys.delayed, keys.jobs, keys.events, keys.dead, keys.where, *keys.streams],
        [now, limit, "1" if emit else "0", events_maxlen, *(dead_retention or [0, "0"])])
    if dead:
        log.error("%d delayed records of queue %s did not decode: moved to dead letters "
                  "(reason malformed)", dead, keys.queue)
    return int(moved), int(next_due)
