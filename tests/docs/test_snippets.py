"""Every fenced Python and shell block of the docs runs as written, against a throwaway Redis.

Each ``python``/``sh``/``bash``/``shell`` block in README.md, consumers/razorpay/README.md and
docs/**/*.md carries a marker on the line before its fence (an HTML comment, invisible once
rendered):

``<!-- snippet: run -->``
    run it; it must exit 0. Python blocks run as a script, shell blocks with ``bash -euo
    pipefail``; the blocks of one document run in order, in one temporary folder, against one
    freshly flushed Redis (``STREAMFLOW_REDIS_URL``), so a later block may use what an earlier
    one added.
``<!-- snippet: run until="TEXT" -->``
    a program that runs until Ctrl-C (a worker): once TEXT appears on its stdout it gets SIGINT
    and must then exit 0.
``<!-- snippet: fragment (why) -->``
    not runnable on its own (a synopsis, a long-running server, placeholders); skipped.

A block without a marker fails the test, so a new snippet is classified when it is written.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from tests.conftest import NOEVICTION
from tests.servers import RedisProcess

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", REPO / "consumers" / "razorpay" / "README.md",
        *sorted((REPO / "docs").rglob("*.md"))]
LANGS = {"python": "python", "py": "python", "sh": "sh", "bash": "sh", "shell": "sh"}
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>```+|~~~+)\s*(?P<info>[\w+-]*)")
MARKER = re.compile(r"^\s*<!--\s*snippet:\s*(?P<kind>run|fragment)\b(?P<rest>.*?)-->\s*$")
UNTIL = re.compile(r'until="(?P<text>[^"]+)"')
TIMEOUT = 60.0


@dataclass(frozen=True)
class Block:
    """One fenced code block of a document."""

    doc: Path
    line: int
    lang: str
    code: str
    kind: str | None  # run, fragment, or None when unmarked
    until: str | None

    def __str__(self) -> str:
        return f"{self.doc.relative_to(REPO)}:{self.line} ({self.lang})"


def blocks(doc: Path) -> Iterator[Block]:
    """The Python and shell blocks of ``doc``, in order, with their markers."""
    lines = doc.read_text().splitlines()
    i = 0
    while i < len(lines):
        opened = FENCE.match(lines[i])
        if opened is None:
            i += 1
            continue
        fence, indent = opened["fence"], len(opened["indent"])
        end = i + 1
        while end < len(lines) and not lines[end].strip().startswith(fence):
            end += 1
        lang = LANGS.get(opened["info"].lower())
        if lang is not None:
            before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            marker = MARKER.match(before)
            until = UNTIL.search(marker["rest"]) if marker else None
            code = "\n".join(line[indent:] for line in lines[i + 1:end]) + "\n"
            yield Block(doc, i + 1, lang, code, marker["kind"] if marker else None,
                        until["text"] if until else None)
        i = end + 1


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: str(d.relative_to(REPO)))
def test_every_code_block_is_marked(doc: Path) -> None:
    unmarked = [str(b) for b in blocks(doc) if b.kind is None]
    assert not unmarked, (
        f"mark these blocks with <!-- snippet: run --> or <!-- snippet: fragment (why) -->: "
        f"{unmarked}")


@pytest.fixture(scope="module")
def docs_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with RedisProcess(tmp_path_factory.mktemp("docs-redis"), config=NOEVICTION) as server:
        yield server.url


def environment(redis_url: str) -> dict[str, str]:
    """The outer environment without settings of its own, pointed at the throwaway Redis."""
    env = {k: v for k, v in os.environ.items()
           if not k.upper().startswith(("STREAMFLOW_", "RAZORPAY_", "OTEL_"))
           and k.upper() not in ("REDIS_URL", "DATABASE_URL")}
    env.update(STREAMFLOW_REDIS_URL=redis_url, PYTHONUNBUFFERED="1",
               PYTHONPATH=str(REPO),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    return env


def command(block: Block, folder: Path, index: int) -> list[str]:
    if block.lang == "python":
        script = folder / f"snippet_{index}.py"
        script.write_text(block.code)
        return [sys.executable, str(script)]
    return ["bash", "-euo", "pipefail", "-c", block.code]


def run_to_end(block: Block, argv: list[str], folder: Path, env: dict[str, str]) -> None:
    proc = subprocess.run(argv, cwd=folder, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT, check=False)
    assert proc.returncode == 0, (
        f"{block} exited {proc.returncode}\n--- code\n{block.code}--- stdout\n{proc.stdout}"
        f"--- stderr\n{proc.stderr}")


def run_until(block: Block, argv: list[str], folder: Path, env: dict[str, str]) -> None:
    """Run until ``block.until`` shows on stdout, then Ctrl-C; it must exit 0."""
    assert block.until is not None
    proc = subprocess.Popen(argv, cwd=folder, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    seen = threading.Event()
    out: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            out.append(line)
            if block.until in line:
                seen.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        appeared = seen.wait(TIMEOUT)
        if appeared:
            proc.send_signal(signal.SIGINT)
        code = proc.wait(TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(5)
    err = proc.stderr.read() if proc.stderr else ""
    assert appeared and code == 0, (
        f"{block}: {'exited ' + str(code) if appeared else 'never printed ' + repr(block.until)}"
        f"\n--- code\n{block.code}--- stdout\n{''.join(out)}--- stderr\n{err}")


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: str(d.relative_to(REPO)))
def test_runnable_snippets_run(doc: Path, docs_redis: str, tmp_path: Path) -> None:
    runnable = [b for b in blocks(doc) if b.kind == "run"]
    if not runnable:
        pytest.skip("no runnable snippet")
    client = redis.Redis.from_url(docs_redis)
    client.flushall()
    client.close()
    env = environment(docs_redis)
    for index, block in enumerate(runnable):
        argv = command(block, tmp_path, index)
        if block.until is not None:
            run_until(block, argv, tmp_path, env)
        else:
            run_to_end(block, argv, tmp_path, env)
