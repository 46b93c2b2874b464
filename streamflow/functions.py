"""The Redis Functions library (Redis >= 7), built from the same ``lua/*.lua`` files as the
EVALSHA scripts.

Each move becomes one function ``<move>_<version>`` whose body is the script's, unchanged:
``KEYS`` and ``ARGV`` are the function's parameters. The version, a hash of every body and its
flags, is in the library's name and in every function's, like a script's SHA: during a rolling
upgrade old and new workers each call their own library, and a server that holds only an older
one answers "Function not found" instead of running moves with another argument layout.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

FORMAT = "1"
"""The wrapper's shape; part of the version, so changing the wrapper gives a new library."""

ALLOW_OOM = frozenset({
    "fetch_jobs", "complete_jobs", "retry_later", "move_to_dead", "reclaim_stalled",
    "requeue_stalled", "trim_stream", "delete_consumer", "drain_queue",
})
"""Moves that must run when Redis is full (maxmemory reached, ``noeviction``).

A script called by EVALSHA is refused on a full Redis only when its first write may grow
memory; a function without flags is refused as a whole, before it runs. The moves by which
workers drain a full Redis (fetch, ack, retry, dead-letter, reclaim, trim, cleanup) carry
``allow-oom``; adds, promotions and retries of dead letters are refused, as with EVALSHA.

Inside an ``allow-oom`` function Redis refuses no write, so a move that sends its optional
writes through ``redis.pcall`` first (``lua/includes/full_redis.lua``: an OOM answer there means
"Redis is full, skip the optional writes") could not tell. Such a move is registered twice: as
``<move>_<version>`` without ``allow-oom`` (refused as a whole, before it runs, when Redis is
full) and as ``<move>_full_<version>`` with it, where ``redis.pcall`` answers OOM as Redis
answers a script's first growing write. Clients call the first and, refused, the second."""

_FULL_PCALL = ("local function full_pcall() return "
               "{err = \"OOM command not allowed when used memory > 'maxmemory'.\"} end")

_SHEBANG = re.compile(r"^#!lua\b(?P<options>[^\n]*)")
_FLAGS = re.compile(r"\bflags=(?P<flags>[a-z,-]*)")


@dataclass(frozen=True, slots=True)
class Library:
    """The library text and where each move sits in it."""

    name: str
    version: str
    text: str
    functions: dict[str, str]
    """Move name -> function name."""
    probe: str
    """A function that writes nothing and returns the version: is the library loaded?"""
    full: dict[str, str]
    """Move name -> its function for a full Redis, for moves registered twice."""
    starts: dict[str, tuple[str, int]] = field(repr=False)
    """Function name -> its move and the library line just before the first of its body."""

    def locate(self, function: str, line: int) -> tuple[str, int] | None:
        """The move and the line of its ``.lua`` file for line ``line`` of the library, which
        Redis names in errors raised inside ``function``; None for another library's."""
        found = self.starts.get(function)
        return (found[0], line - found[1]) if found is not None else None


def flags_of(move: str, body: str) -> tuple[str, ...]:
    """The function flags of ``move``: ``allow-oom`` where listed, plus the flags of a
    ``#!lua flags=...`` first line of its file."""
    flags = ["allow-oom"] if move in ALLOW_OOM else []
    shebang = _SHEBANG.match(body)
    declared = _FLAGS.search(shebang["options"]) if shebang else None
    if declared:
        flags += [f for f in declared["flags"].split(",") if f and f not in flags]
    return tuple(flags)


def build(moves: dict[str, str]) -> Library:
    """The library of ``moves`` (move name -> expanded script body)."""
    digest = hashlib.sha1(FORMAT.encode())
    for move in sorted(moves):
        digest.update(f"\0{move}\0{','.join(flags_of(move, moves[move]))}\0".encode())
        digest.update(moves[move].encode())
    version = digest.hexdigest()[:12]
    name = f"streamflow_{version}"
    probe = f"version_{version}"
    lines = [
        f"#!lua name={name}",
        "-- streamflow's atomic moves, built from streamflow/lua/*.lua by streamflow.functions:",
        "-- each function runs its script's body unchanged (KEYS and ARGV are its parameters).",
        f"redis.register_function{{function_name='{probe}', flags={{'no-writes'}},",
        f"  callback=function() return '{version}' end}}",
    ]
    functions: dict[str, str] = {}
    full: dict[str, str] = {}
    starts: dict[str, tuple[str, int]] = {}

    def register(move: str, function: str, flags: tuple[str, ...], preamble: str = "") -> None:
        listed = ", ".join(f"'{flag}'" for flag in flags)
        lines.append(f"redis.register_function{{function_name='{function}', flags={{{listed}}},")
        lines.append(f"  callback=function(KEYS, ARGV){preamble}")
        starts[function] = (move, len(lines))
        # A shebang is for EVAL only; as a comment the body keeps its line numbers.
        lines.extend(_SHEBANG.sub(r"--\g<0>", moves[move]).rstrip("\n").split("\n"))
        lines.append("end}")

    lines.append(_FULL_PCALL)
    for move in sorted(moves):
        flags = flags_of(move, moves[move])
        functions[move] = f"{move}_{version}"
        if "allow-oom" in flags and "redis.pcall(" in moves[move]:
            register(move, functions[move], tuple(f for f in flags if f != "allow-oom"))
            full[move] = f"{move}_full_{version}"
            register(move, full[move], flags,
                     " local redis = setmetatable({pcall = full_pcall}, {__index = redis})")
        else:
            register(move, functions[move], flags)
    return Library(name=name, version=version, text="\n".join(lines) + "\n",
                   functions=functions, probe=probe, full=full, starts=starts)
