"""CLI output: aligned tables or JSON on stdout, one-line errors on stderr."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import typer

from ._app import echo_safe, prog_name

_DURATION = re.compile(r"^\s*(?P<value>\d+(?:\.\d+)?)\s*(?P<unit>ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
MAX_SECONDS = 10 * 366 * 86400.0
"""Longest duration taken on the command line (10 years): beyond that it is a typo."""


def parse_duration(text: str) -> float:
    """Seconds from ``250ms``, ``5s``, ``2m``, ``1h``, ``1d`` or a plain number of seconds."""
    match = _DURATION.match(text)
    if match is None:
        raise typer.BadParameter(
            f"bad duration {text!r}: use a number with ms, s, m, h or d (e.g. 5s, 250ms)")
    seconds = float(match["value"]) * _UNITS[match["unit"]]
    if seconds > MAX_SECONDS:
        raise typer.BadParameter(f"duration {text.strip()!r} is over the limit of 10 years")
    return seconds


_ENTRY_ID = re.compile(r"^(\d+(-\d+)?|\$)$")


def check_entry_ids(ids: list[str] | None) -> list[str] | None:
    """``ids`` if each is a stream entry id (``1700000000000-0``); else a usage error."""
    for entry_id in ids or ():
        if not _ENTRY_ID.match(entry_id):
            raise typer.BadParameter(f"{entry_id!r} is not a stream entry id like 1700000000000-0")
    return ids


def parse_json(text: str) -> Any:
    """A JSON value from the command line."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise typer.BadParameter(f"not valid JSON: {exc}") from None


def emit_json(value: Any) -> None:
    """Print ``value`` as JSON."""
    echo_safe(orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))


def show(value: Any) -> str:
    """A value for a text table: JSON for data (never a Python repr), ``-`` for nothing."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def cut(text: str, width: int) -> str:
    """``text`` on one line, at most ``width`` characters, with ``…`` when shortened."""
    line = " ".join(text.split())
    return line if len(line) <= width else line[:width - 1] + "…"


def when(ms: int | None, *, millis: bool = False) -> str:
    """A UTC time from epoch milliseconds (``-`` for none)."""
    if not ms:
        return "-"
    text = f"{datetime.fromtimestamp(ms / 1000, tz=UTC):%Y-%m-%d %H:%M:%S.%f}"
    return text[:-3] if millis else text[:-7]


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain aligned text table."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip()
             for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print a table."""
    echo_safe(table(headers, rows))


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``message`` as one line on stderr; returns the Exit to raise."""
    typer.echo(f"{prog_name()}: error: {message}", err=True)
    return typer.Exit(code)
