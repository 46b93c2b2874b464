"""The Lua registry: every ``lua/*.lua`` file loaded once, called by EVALSHA.

A file ``verb_object-N.lua`` takes exactly N keys, or at least N when its header declares a
variadic tail. After a failover or a SCRIPT FLUSH the server answers NOSCRIPT: the scripts are
loaded again and only the commands that failed are sent again.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

from redis.exceptions import NoScriptError, ResponseError

from . import protocol
from .errors import ScriptCode, ScriptError

Command = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Script:
    """One atomic move."""

    name: str
    body: str
    sha: str
    nkeys: int
    variadic: bool
    coded: bool
    """Whether negative results are error codes (``-2 (NOT_PENDING)`` in the header)."""

    def command(self, keys: list[str] | tuple[str, ...], args: list[Any]) -> Command:
        """The EVALSHA command calling this script."""
        if len(keys) < self.nkeys or (not self.variadic and len(keys) != self.nkeys):
            wanted = f"at least {self.nkeys}" if self.variadic else str(self.nkeys)
            raise ValueError(f"{self.name} takes {wanted} keys, got {len(keys)}")
        return ("EVALSHA", self.sha, len(keys), *keys, *args)

    def check(self, result: Any) -> Any:
        """``result``, or ``ScriptError`` for a negative code."""
        if self.coded and isinstance(result, int) and result < 0:
            raise ScriptError(self.name, ScriptCode(result))
        return result


_FILE = re.compile(r"^(?P<name>[a-z_]+)-(?P<nkeys>\d+)\.lua$")
_CODE = re.compile(r"-\d+ \([A-Z_]+\)")
_INCLUDE = re.compile(r'^--- @include "(?P<name>[a-z_]+)"$', re.M)


def _expand(body: str) -> str:
    """``body`` with each ``--- @include "name"`` line replaced by ``lua/includes/name.lua``
    (one level deep: an include includes nothing)."""
    includes = resources.files("streamflow.lua") / "includes"

    def fragment(match: re.Match[str]) -> str:
        return (includes / f"{match['name']}.lua").read_text(encoding="utf-8").rstrip("\n")

    return _INCLUDE.sub(fragment, body)


def _load_all() -> dict[str, Script]:
    scripts: dict[str, Script] = {}
    for entry in resources.files("streamflow.lua").iterdir():
        match = _FILE.match(entry.name)
        if match is None:
            continue
        source = entry.read_text(encoding="utf-8")
        header = source.split("]]", 1)[0]
        body = _expand(source)
        scripts[match["name"]] = Script(
            name=match["name"],
            body=body,
            sha=hashlib.sha1(body.encode()).hexdigest(),
            nkeys=int(match["nkeys"]),
            variadic="(declared tail)" in header,
            coded=_CODE.search(header) is not None,
        )
    return scripts


SCRIPTS: dict[str, Script] = _load_all()

ADD_JOBS = SCRIPTS["add_jobs"]
FETCH_JOBS = SCRIPTS["fetch_jobs"]
COMPLETE_JOBS = SCRIPTS["complete_jobs"]
RETRY_LATER = SCRIPTS["retry_later"]
MOVE_TO_DEAD = SCRIPTS["move_to_dead"]
PROMOTE_DUE = SCRIPTS["promote_due"]
RECLAIM_STALLED = SCRIPTS["reclaim_stalled"]
TRIM_STREAM = SCRIPTS["trim_stream"]
DELETE_CONSUMER = SCRIPTS["delete_consumer"]
RETRY_DEAD = SCRIPTS["retry_dead"]
REQUEUE_STALLED = SCRIPTS["requeue_stalled"]
DRAIN_QUEUE = SCRIPTS["drain_queue"]
SCHEDULE_REPEAT = SCRIPTS["schedule_repeat"]


flag = protocol.flag


async def load_scripts(client: Any) -> None:
    """SCRIPT LOAD every script (on a Cluster client, redis-py sends it to every primary)."""
    for script in SCRIPTS.values():
        await client.script_load(script.body)


async def call(client: Any, script: Script, keys: list[str] | tuple[str, ...],
               args: list[Any]) -> Any:
    """Run one script; loads the scripts again after a NOSCRIPT."""
    command = script.command(keys, args)
    try:
        return script.check(await client.execute_command(*command))
    except NoScriptError:
        await load_scripts(client)
        return script.check(await client.execute_command(*command))


async def pipeline(client: Any, commands: list[Command]) -> list[Any]:
    """Send ``commands`` in one non-transactional pipeline; per-command errors are returned
    in place, not raised. Commands that met NOSCRIPT are sent again once the scripts are loaded.
    """
    if not commands:
        return []
    if len(commands) == 1:  # no pipeline object for one command: less work on the hot path
        try:
            return [await client.execute_command(*commands[0])]
        except NoScriptError:
            await load_scripts(client)
            return await pipeline(client, commands)
        except ResponseError as exc:
            return [exc]
    results = await _send(client, commands)
    retry = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
    if retry:
        await load_scripts(client)
        again = await _send(client, [commands[i] for i in retry])
        for i, result in zip(retry, again, strict=True):
            results[i] = result
    return results


async def _send(client: Any, commands: list[Command]) -> list[Any]:
    pipe = client.pipeline(transaction=False)
    for command in commands:
        pipe.execute_command(*command)
    return list(await pipe.execute(raise_on_error=False))
