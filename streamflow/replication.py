"""``durability="replicated"``: a write is confirmed once a replica of the master that took it
has it (``WAIT 1``).

WAIT counts the replicas that reached the offset of the connection it is sent on, so it must
follow the writes on that same connection. On a single Redis (or Sentinel) that is one WAIT at
the end of the pipeline. On Redis Cluster the pipeline is split by node, one connection each:
every node that took a write gets its own WAIT, routed to it, after its writes. A write sent
again on another connection (a script reloaded, a full Redis' twin, a MOVED redirect) is not
covered by any WAIT: it is reported unconfirmed, to be retried with the same job ids. (An ASK
redirect, during a slot migration, cannot be told from the replies: such a write is confirmed
by its source node's WAIT.)
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import RedisCluster

from . import scripts
from .errors import DurabilityError


def _nodes(client: Any, commands: list[scripts.Command]) -> list[str]:
    """The Cluster node each command goes to (by its first key: FCALL/EVALSHA name, nkeys,
    key)."""
    return [client.get_node_from_key(command[3]).name for command in commands]


def _waits(client: Any, commands: list[scripts.Command], timeout_ms: int
           ) -> tuple[list[scripts.Command], dict[int, Any]]:
    """The WAIT commands to send after ``commands``, and the node each must go to (none on a
    single Redis)."""
    wait = ("WAIT", 1, timeout_ms)
    if not isinstance(client, RedisCluster):
        return [wait], {}
    names = list(dict.fromkeys(_nodes(client, commands)))
    return [wait] * len(names), {
        len(commands) + i: client.get_node(node_name=name) for i, name in enumerate(names)}


async def send_writes(client: Any, commands: list[scripts.Command], *, replicated: bool,
                      timeout_s: float) -> list[Any]:
    """``commands`` in one pipeline (``scripts.pipeline``): their results, errors in place.
    With ``replicated``, ``DurabilityError`` when every write went through but a replica of
    some master that took one did not confirm within ``timeout_s``."""
    if not replicated:
        return await scripts.pipeline(client, commands)
    waits, targets = _waits(client, commands, int(timeout_s * 1000))
    planned = _nodes(client, commands) if targets else []
    resent: list[int] = []
    results = await scripts.pipeline(client, [*commands, *waits], targets=targets,
                                     resent=resent)
    acks = results[len(commands):]
    del results[len(commands):]
    if any(isinstance(result, Exception) for result in results):
        return results  # the caller reports the refused write, not the missing replica
    moved = bool(targets) and _nodes(client, commands) != planned  # MOVED: the map changed
    if resent or moved or any(not isinstance(ack, int) or ack < 1 for ack in acks):
        raise DurabilityError(f"no replica confirmed the add within {timeout_s:g}s; retry "
                              "it with the same job_id")
    return results
