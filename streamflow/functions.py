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
With ``allow-oom`` Redis refuses no write inside the function, so events and kept results
(capped streams) are written even when Redis is full."""

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
    starts: dict[str, int] = field(repr=False)
    """Function name -> the library line just before the first line of its body."""

    def locate(self, function: str, line: int) -> tuple[str, int] | None:
        """The move and the line of its ``.lua`` file for line ``line`` of the library, which
        Redis names in errors raised inside ``function``; None for another library's."""
        start = self.starts.get(function)
        if start is None:
            return None
        move = next(m for m, f in self.functions.items() if f == function)
        return move, line - start


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
    starts: dict[str, int] = {}
    for move in sorted(moves):
        function = functions[move] = f"{move}_{version}"
        flags = ", ".join(f"'{flag}'" for flag in flags_of(move, moves[move]))
        lines.append(f"redis.register_function{{function_name='{function}', flags={{{flags}}},")
        lines.append("  callback=function(KEYS, ARGV)")
        starts[function] = len(lines)
        # A shebang is for EVAL only; as a comment the body keeps its line numbers.
        lines.extend(_SHEBANG.sub(r"--\g<0>", moves[move]).rstrip("\n").split("\n"))
        lines.append("end}")
    return Library(name=name, version=version, text="\n".join(lines) + "\n",
                   functions=functions, probe=probe, starts=starts)
