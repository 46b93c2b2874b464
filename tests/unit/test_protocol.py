"""The protocol is written once: every field, state and event name a Lua script spells out is
one ``streamflow.protocol`` defines."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from streamflow import protocol
from streamflow.codec import decode_job

_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')
_COMMENT = re.compile(r"--\[\[.*?\]\]|--[^\n]*", re.S)

REDIS_WORDS = frozenset({
    # command arguments and reply keys of Redis itself, not streamflow's protocol
    "*", "~", "+", "-", ">", "-inf", "0-0", "", "0", "1", ":",
    "last-generated-id", "last-delivered-id", "lag", "entries-added", "pending", "name",
    "table", "string", "number",  # Lua type names
})


def _literals(body: str) -> set[str]:
    code = _COMMENT.sub("", body)
    found = set()
    for literal in _STRING.findall(code):
        if re.fullmatch(r"[A-Z][A-Z_|]*", literal):
            continue  # a Redis command or keyword
        if literal.startswith("^") or " " in literal:
            continue  # a Lua pattern, or a message
        found.add(literal)
    return found


def _lua_files() -> list[str]:
    root = resources.files("streamflow.lua")
    names = [entry.name for entry in root.iterdir() if entry.name.endswith(".lua")]
    includes = root / "includes"
    if includes.is_dir():
        names += [f"includes/{entry.name}" for entry in includes.iterdir()
                  if entry.name.endswith(".lua")]
    return sorted(names)


@pytest.mark.parametrize("name", _lua_files())
def test_every_literal_in_a_script_is_defined_by_the_protocol(name: str) -> None:
    body = (resources.files("streamflow.lua") / name).read_text(encoding="utf-8")
    unknown = _literals(body) - protocol.protocol_literals() - REDIS_WORDS
    assert not unknown, f"{name} spells out names streamflow.protocol does not define: {unknown}"


def test_the_checker_sees_a_literal_that_is_not_defined() -> None:
    body = 'local x = 1\nrcall("XADD", k, "*", "n", name, "colour", "red")  -- "comment"\n'
    assert _literals(body) == {"*", "n", "colour", "red"}


def test_the_implicit_job_id_is_the_one_the_decoder_gives() -> None:
    job = decode_job(b"1700000000000-0", {b"n": b"x", b"d": b"1"}, "q", "high")
    assert job.id == protocol.implicit_job_id("high", "1700000000000-0")
