"""The Lua registry: every ``lua/*.lua`` file, called as a Redis Function (FCALL) or as a
script (EVALSHA).

A file ``verb_object-N.lua`` takes exactly N keys, or at least N when its header declares a
variadic tail. Call sites build FCALL commands (``Script.command``); ``call`` and ``pipeline``
send them as built when the server holds this version's functions library (Redis >= 7, see
``streamflow.functions``), else as EVALSHA: Redis 7 pays nothing for the choice. The first
call on a client settles which: the library is probed, and loaded when missing if the user may
(``FUNCTION LOAD``: an admin, or an unrestricted development user); a server without FCALL
(Redis 6.2), or a user without the right to call it, gets EVALSHA. ``RedisSettings.lua``
forces either. After a failover, a SCRIPT FLUSH or a FUNCTION FLUSH the moves are loaded again
(when the user may) and only the commands that failed are sent again.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal
from weakref import WeakKeyDictionary

from redis.exceptions import NoPermissionError, NoScriptError, OutOfMemoryError, ResponseError

from . import functions, protocol
from .errors import ScriptCode, ScriptError

Command = tuple[Any, ...]
Mode = Literal["auto", "fcall", "evalsha"]


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
    function: str
    """Its name in the functions library."""
    full_function: str | None = None
    """Its function for a full Redis, sent when Redis refused ``function`` (see
    ``functions.ALLOW_OOM``)."""

    def command(self, keys: list[str] | tuple[str, ...], args: list[Any]) -> Command:
        """The FCALL command calling this move (``call`` and ``pipeline`` send it as EVALSHA
        where the server has no functions library)."""
        if len(keys) < self.nkeys or (not self.variadic and len(keys) != self.nkeys):
            wanted = f"at least {self.nkeys}" if self.variadic else str(self.nkeys)
            raise ValueError(f"{self.name} takes {wanted} keys, got {len(keys)}")
        return ("FCALL", self.function, len(keys), *keys, *args)

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


def _load_all() -> tuple[dict[str, Script], functions.Library]:
    found: dict[str, tuple[str, str, int]] = {}
    for entry in resources.files("streamflow.lua").iterdir():
        match = _FILE.match(entry.name)
        if match is None:
            continue
        source = entry.read_text(encoding="utf-8")
        found[match["name"]] = (source.split("]]", 1)[0], _expand(source), int(match["nkeys"]))
    library = functions.build({name: body for name, (_, body, _) in found.items()})
    scripts = {
        name: Script(name=name, body=body, sha=hashlib.sha1(body.encode()).hexdigest(),
                     nkeys=nkeys, variadic="(declared tail)" in header,
                     coded=_CODE.search(header) is not None,
                     function=library.functions[name], full_function=library.full.get(name))
        for name, (header, body, nkeys) in found.items()
    }
    return scripts, library


SCRIPTS, LIBRARY = _load_all()

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
ADD_ORDERED = SCRIPTS["add_ordered"]
RELEASE_KEYS = SCRIPTS["release_keys"]


flag = protocol.flag


_SHAS = {script.function: script.sha for script in SCRIPTS.values()}
_FULL = {script.function: script.full_function for script in SCRIPTS.values()
         if script.full_function is not None}
_modes: WeakKeyDictionary[Any, str] = WeakKeyDictionary()


class LibraryNotLoaded(NoPermissionError):
    """Raised when the server lacks this version's functions library and the user may not
    load it (producers and workers may not: an admin loads it, ``streamflow load-functions``)."""


def use(client: Any, mode: Mode) -> None:
    """Call the moves on ``client`` by FCALL or EVALSHA; "auto" (the default): FCALL where
    the server has Functions and the user may call them."""
    if mode == "auto":
        _modes.pop(client, None)
    else:
        _modes[client] = mode


def locate(ident: str, line: int) -> tuple[Script, int] | None:
    """The script and the line of its body that Redis names in an error raised inside it
    (``script: <sha or function>, on @user_script:<line>`` or ``@user_function:<line>``)."""
    for script in SCRIPTS.values():
        if ident == script.sha:
            return script, line
    found = LIBRARY.locate(ident, line)
    return (SCRIPTS[found[0]], found[1]) if found is not None else None


_NOPERM = re.compile(r"script: (?P<ident>\w+), on @user_(?:script|function):(?P<line>\d+)")
_LUA_COMMAND = re.compile(r'"(?P<command>[A-Za-z]+)"(?:\s*,\s*"(?P<sub>[A-Za-z]+)")?')
_WITH_SUBCOMMANDS = frozenset({"XGROUP", "XINFO", "CLIENT", "SCRIPT", "CONFIG", "OBJECT"})


def permission_error(text: str) -> NoPermissionError | None:
    """A NoPermissionError naming the command for Redis's ACL refusal inside a move, which
    names neither (``The user executing the script can't run this command or subcommand
    script: <sha or function>, on @user_script:<line>`` or ``@user_function:<line>``)."""
    match = _NOPERM.search(text)
    if match is None:
        return None
    found = locate(match["ident"], int(match["line"]))
    where = f"a Lua script ({match['ident'][:40]})"
    command = "?"
    if found is not None:
        script, number = found
        where = f"the {script.name} script, line {number}"
        lines = script.body.splitlines()
        hit = _LUA_COMMAND.search(lines[number - 1]) if 0 < number <= len(lines) else None
        if hit is not None:
            command = hit["command"].lower()
            if hit["sub"] and command.upper() in _WITH_SUBCOMMANDS:
                command += f"|{hit['sub'].lower()}"
    return NoPermissionError(
        f"this user has no permissions to run the '{command}' command (called by {where}); "
        "grant it in the ACL (see deploy/redis/users.acl.md)")


async def load_functions(client: Any) -> bool:
    """FUNCTION LOAD this version's library (Redis >= 7; on a Cluster client, on every
    primary); False when it was loaded already. ``LibraryNotLoaded`` when the user may not."""
    try:
        await client.function_load(LIBRARY.text)
    except NoPermissionError as exc:
        raise LibraryNotLoaded(
            f"the functions library {LIBRARY.name} of this streamflow version is not loaded "
            f"and this user may not load it ({exc}): load it once as an admin user, "
            "`streamflow load-functions`") from exc
    except ResponseError as exc:
        if "already exists" not in str(exc):
            raise
        return False
    return True


async def prune_functions(client: Any) -> list[str]:
    """Delete the functions libraries of other streamflow versions (run it once no worker or
    producer of those versions is left); returns their names."""
    listing = await client.function_list(library="streamflow_*")
    if isinstance(listing, dict):  # a Cluster client: one reply per primary
        listing = [library for reply in listing.values() for library in reply]
    names = set()
    for library in listing:
        fields = dict(zip(library[::2], library[1::2], strict=True))
        name = fields.get(b"library_name", fields.get("library_name"))
        names.add(name.decode() if isinstance(name, bytes) else str(name))
    stale = sorted(names - {LIBRARY.name})
    for name in stale:
        await client.function_delete(name)
    return stale


async def load_scripts(client: Any) -> str:
    """Make every move callable on the server of ``client``; returns how they are called:
    "fcall" (the library is loaded, by this call when missing and the user may), else
    "evalsha" after SCRIPT LOAD of every script (on a Cluster client, on every primary)."""
    mode = _modes.get(client)
    if mode != "evalsha":
        mode = await _settle(client)
    if mode == "evalsha":
        for script in SCRIPTS.values():
            await client.script_load(script.body)
    return mode


async def _settle(client: Any) -> str:
    forced = _modes.get(client)
    try:
        await client.execute_command("FCALL", LIBRARY.probe, 0)
    except ResponseError as exc:
        if gone(exc):
            await load_functions(client)
        elif forced is None and _without_functions(exc):
            _modes[client] = "evalsha"
            return "evalsha"
        else:
            raise
    _modes[client] = "fcall"
    return "fcall"


def _without_functions(error: ResponseError) -> bool:
    """A server without FCALL (Redis 6.2), or a user who may not call it (an older ACL)."""
    text = str(error)
    return text.lower().startswith("unknown command") or (
        isinstance(error, NoPermissionError) and "'fcall'" in text)


def gone(error: Any) -> bool:
    """NOSCRIPT, or the functions library's counterpart (a FUNCTION FLUSH, a new server)."""
    return isinstance(error, NoScriptError) or (
        isinstance(error, ResponseError) and str(error).startswith("Function not found"))


async def _reload(client: Any, mode: str) -> None:
    if mode == "fcall":
        await load_functions(client)
    else:
        await load_scripts(client)


def _as_evalsha(command: Command) -> Command:
    if command[0] == "FCALL":
        sha = _SHAS.get(command[1])
        if sha is not None:
            return ("EVALSHA", sha, *command[2:])
    return command


def settled(client: Any) -> bool:
    """Whether ``client``'s moves are called by FCALL or EVALSHA is known (``as_sent``)."""
    return client in _modes


def as_sent(client: Any, command: Command) -> Command | None:
    """``command`` (an FCALL built by ``Script.command``) as ``call`` would send it on
    ``client``: FCALL or EVALSHA; None while the first call has not settled which. For a
    caller that writes the command itself, in one write with others."""
    mode = _modes.get(client)
    if mode is None:
        return None
    return _as_evalsha(command) if mode == "evalsha" else command


async def call(client: Any, script: Script, keys: list[str] | tuple[str, ...],
               args: list[Any]) -> Any:
    """Run one move; loads the moves again when the server lost them."""
    command = script.command(keys, args)
    mode = _modes.get(client) or await _settle(client)
    if mode == "evalsha":
        command = ("EVALSHA", script.sha, *command[2:])
    try:
        return script.check(await client.execute_command(*command))
    except OutOfMemoryError:
        if mode == "evalsha" or script.full_function is None:
            raise
        command = ("FCALL", script.full_function, *command[2:])
    except ResponseError as exc:
        if not gone(exc):
            raise
        await _reload(client, mode)
    return script.check(await client.execute_command(*command))


async def pipeline(client: Any, commands: list[Command], *,
                   targets: Mapping[int, Any] | None = None,
                   resent: list[int] | None = None) -> list[Any]:
    """Send ``commands`` in one non-transactional pipeline; per-command errors are returned
    in place, not raised. Commands that met NOSCRIPT ("Function not found") are sent again once
    the moves are loaded; moves a full Redis refused, again as their function for a full Redis
    (their indexes are added to ``resent``). ``targets`` routes commands (by index) to a
    Cluster node (``target_nodes``)."""
    if not commands:
        return []
    mode = _modes.get(client) or await _settle(client)
    if mode == "evalsha":
        commands = [_as_evalsha(command) for command in commands]
    results = await _send(client, commands, targets or {})
    retry = [i for i, result in enumerate(results) if gone(result)]
    if retry:
        await _reload(client, mode)
        await _send_again(client, commands, results, retry)
    full = [i for i, result in enumerate(results) if isinstance(result, OutOfMemoryError)
            and commands[i][0] == "FCALL" and commands[i][1] in _FULL]
    if full:
        commands = list(commands)
        for i in full:
            commands[i] = ("FCALL", _FULL[commands[i][1]], *commands[i][2:])
        await _send_again(client, commands, results, full)
    if resent is not None:
        resent += retry + full
    return results


async def _send_again(client: Any, commands: list[Command], results: list[Any],
                      indexes: list[int]) -> None:
    again = await _send(client, [commands[i] for i in indexes])
    for i, result in zip(indexes, again, strict=True):
        results[i] = result


async def _send(client: Any, commands: list[Command],
                targets: Mapping[int, Any] | None = None) -> list[Any]:
    if len(commands) == 1 and not targets:  # no pipeline object: less work on the hot path
        try:
            return [await client.execute_command(*commands[0])]
        except ResponseError as exc:
            return [exc]
    pipe = client.pipeline(transaction=False)
    for i, command in enumerate(commands):
        if targets and i in targets:
            pipe.execute_command(*command, target_nodes=targets[i])
        else:
            pipe.execute_command(*command)
    return list(await pipe.execute(raise_on_error=False))
