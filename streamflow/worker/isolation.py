"""Process isolation (``isolation="process"``): every handler runs in a child process, a fresh
interpreter that imports the handlers by name, one job at a time per child. A child that dies
fails its job with ``JobCrashed`` and is replaced; a deadline kills the child. Jobs and replies
cross a socket as JSON (orjson), never pickled.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import signal
import socket
import subprocess
import sys
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import anyio
import orjson

from ..errors import (
    ConfigurationError,
    Discard,
    HandlerError,
    JobCrashed,
    JobTimeout,
    RateLimited,
    Retry,
)
from ..job import NO_OPTIONS, Job, JobOptions
from ..router import Route, Router
from ..settings import to_seconds

log = logging.getLogger("streamflow.worker")

START_TIMEOUT = 60.0
"""Seconds a new child may take to import the handlers and say it is ready."""
TRACEBACK_CHARS = 4000

def import_path(handler: Callable[..., Any]) -> str:
    """``module:qualname`` of ``handler``, checked to name the same object; a handler of the
    ``__main__`` module is named by the module's own name (``python -m pkg.mod``)."""
    module = getattr(handler, "__module__", None)
    qualname = getattr(handler, "__qualname__", None)
    importable = bool(module and qualname) and "<" not in str(qualname)
    if importable and module == "__main__":
        main = sys.modules["__main__"]
        spec = getattr(main, "__spec__", None)
        try:
            importable = spec is not None and _lookup(main, str(qualname)) is handler
        except AttributeError:
            importable = False
        module = spec.name if spec is not None else module
    elif importable:
        try:
            importable = resolve(f"{module}:{qualname}") is handler
        except (ImportError, AttributeError):
            importable = False
    if not importable:
        raise ConfigurationError(
            f"process isolation runs handlers in child processes, which import them by name: "
            f"{handler!r} is not importable as module:name (define it at module level, in a "
            f"module, not in a script run by path)")
    return f"{module}:{qualname}"


def resolve(path: str) -> Any:
    """The object named by ``module:qualname``."""
    module_name, _, qualname = path.partition(":")
    return _lookup(importlib.import_module(module_name), qualname)


def _lookup(target: Any, qualname: str) -> Any:
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


class _Child:
    """One child process and the parent's end of its socket."""

    def __init__(self, process: subprocess.Popen[bytes], conn: Connection) -> None:
        self.process = process
        self.conn = conn

    def call(self, message: bytes) -> bytes:
        """Send a job, wait for its reply (in a thread); ``JobCrashed`` if the child died."""
        try:
            self.conn.send_bytes(message)
            return self.conn.recv_bytes()
        except (EOFError, OSError):
            raise JobCrashed(self.wait()) from None

    def wait(self) -> int | None:
        """The exit code of a child whose socket closed (it is ending)."""
        try:
            return self.process.wait(5)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        # the socket is left to the garbage collector: a thread may still be reading from it
        if self.process.poll() is None:
            self.process.kill()


class ProcessPool:
    """Up to ``processes`` child processes running ``router``'s handlers."""

    def __init__(self, router: Router, processes: int, *,
                 on_crash: Callable[[], None]) -> None:
        self.processes = processes
        self.crashes = 0
        self._on_crash = on_crash
        routes = {id(route): route for route in
                  [router.resolve(name) for name in router.names] + [router.resolve("\0")]
                  if route is not None}
        self._paths = [import_path(route.handler) for route in routes.values()]
        self._index = {key: i for i, key in enumerate(routes)}
        self._children: set[_Child] = set()
        self._idle: list[_Child] = []
        self._slots: anyio.Semaphore | None = None
        self._limiter: anyio.CapacityLimiter | None = None

    async def start(self) -> None:
        """Start every child; ``ConfigurationError`` when one cannot import the handlers."""
        self._slots = anyio.Semaphore(self.processes)
        self._limiter = anyio.CapacityLimiter(self.processes)
        self._idle = await anyio.to_thread.run_sync(self._start_all)

    def _start_all(self) -> list[_Child]:
        children = [self._launch() for _ in range(self.processes)]  # they start in parallel
        try:
            for child in children:
                self._await_ready(child)
        except BaseException:
            for child in children:
                self._drop(child)
            raise
        return children

    def _spawn(self) -> _Child:
        child = self._launch()
        self._await_ready(child)
        return child

    def _launch(self) -> _Child:
        # a fresh interpreter (not multiprocessing): it never re-runs the parent's __main__
        ours, theirs = socket.socketpair()
        with theirs:
            process = subprocess.Popen(
                [sys.executable, "-c", CHILD_ENTRY, str(theirs.fileno())],
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL)
        child = _Child(process, Connection(ours.detach()))
        self._children.add(child)
        return child

    def _await_ready(self, child: _Child) -> None:
        try:
            child.conn.send_bytes(orjson.dumps(
                [self._paths, sys.path, logging.getLogger().getEffectiveLevel()]))
            if not child.conn.poll(START_TIMEOUT):
                raise ConfigurationError(f"a handler process did not start in {START_TIMEOUT:g}s")
            ready, detail = orjson.loads(child.conn.recv_bytes())
        except (EOFError, OSError):
            ready, detail = False, f"exit code {child.wait()}"
        except BaseException:
            self._drop(child)
            raise
        if not ready:
            self._drop(child)
            raise ConfigurationError(f"a handler process could not start: {detail}")

    async def run(self, route: Route, job: Job, timeout: float | None) -> Any:
        """``route``'s handler on ``job`` in a child; ``JobTimeout`` past ``timeout`` seconds
        (the child is killed), ``JobCrashed`` when the child died."""
        assert self._slots is not None and self._limiter is not None, "start() first"
        message = orjson.dumps([
            self._index[id(route)], job.id, job.name, job.data, job.attempt, job.enqueued_ms,
            job.queue, job.level, job.entry_id, job.options.to_wire(), job.traceparent,
            job.tracestate])
        async with self._slots:
            child = await self._take()
            reply: bytes | None = None
            try:
                with anyio.move_on_after(timeout if timeout is not None else float("inf")):
                    reply = await anyio.to_thread.run_sync(child.call, message,
                                                           abandon_on_cancel=True,
                                                           limiter=self._limiter)
            except JobCrashed as exc:
                self.crashes += 1
                self._on_crash()
                log.warning("job %s (%s) %s; a new process replaces it", job.id, job.name, exc)
                raise
            finally:
                if reply is None:
                    self._drop(child)
                else:
                    self._idle.append(child)
        if reply is None:
            raise JobTimeout(timeout or 0.0)
        ok, value = orjson.loads(reply)
        if ok:
            return value
        raise _rebuild(value)

    async def _take(self) -> _Child:
        while self._idle:
            child = self._idle.pop()
            if child.process.poll() is None:
                return child
            log.warning("an idle handler process %d ended (exit code %s); a new one replaces it",
                        child.process.pid, child.process.returncode)
            self._drop(child)
        return await anyio.to_thread.run_sync(self._spawn, limiter=self._limiter)

    def _drop(self, child: _Child) -> None:
        self._children.discard(child)
        child.kill()

    async def close(self) -> None:
        """Stop every child: idle ones are told to end, the others killed."""
        children, self._idle = list(self._children), []
        self._children.clear()
        for child in children:
            child.conn.close()  # an idle child ends on EOF

        def reap() -> None:
            for child in children:
                if child.wait() is None:
                    child.kill()
                    child.wait()

        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(reap, abandon_on_cancel=True)


def _rebuild(error: dict[str, Any]) -> BaseException:
    kind = error.get("s")
    if kind == "retry":
        return Retry(error.get("d"), error["m"])
    if kind == "discard":
        return Discard(error["m"])
    if kind == "rate_limited":
        return RateLimited(error["d"], queue=bool(error.get("q")))
    return HandlerError(error["t"], error["m"], error["tb"])


# -- the child side --------------------------------------------------------------------------


CHILD_ENTRY = "import sys; from streamflow.worker.isolation import child_main; child_main(sys.argv)"


def child_main(argv: list[str]) -> None:
    """A child process: import the handlers, then run one job per message until EOF."""
    # the parent decides when its children end: a signal to the whole process group (Ctrl-C,
    # systemd) must not kill the jobs the parent is finishing within its grace; a parent that
    # dies without a word (SIGKILL) takes its children along
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent()
    from ..logs import configure_logging

    conn = Connection(int(argv[-1]))
    paths, sys_path, log_level = orjson.loads(conn.recv_bytes())
    sys.path[:] = sys_path
    configure_logging(log_level)
    try:
        handlers = [(route.handler, route.is_async)
                    for route in (Route.of(resolve(path)) for path in paths)]
    except BaseException as exc:
        conn.send_bytes(orjson.dumps([False, f"{type(exc).__name__}: {exc}"]))
        return
    conn.send_bytes(orjson.dumps([True, os.getpid()]))
    loop = asyncio.new_event_loop()  # one per child: clients made by async handlers stay usable
    while True:
        try:
            message = conn.recv_bytes()
        except (EOFError, OSError):
            return
        conn.send_bytes(_run_job(handlers, message, loop))


def _die_with_parent() -> None:
    if sys.platform == "linux":
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def _run_job(handlers: list[tuple[Callable[[Job], Any], bool]], message: bytes,
             loop: asyncio.AbstractEventLoop) -> bytes:
    from ..logs import bind_job, unbind_job

    (index, job_id, name, data, attempt, enqueued_ms, queue_name, level, entry_id, options,
     traceparent, tracestate) = orjson.loads(message)
    job = Job(job_id, name, data, attempt, enqueued_ms, queue_name, level, entry_id,
              JobOptions.from_wire(options) if options else NO_OPTIONS, traceparent, tracestate)
    handler, is_async = handlers[index]
    token = bind_job(job)
    try:
        if is_async:
            ok, value = loop.run_until_complete(_guarded(handler, job))
        else:
            try:
                ok, value = True, handler(job)
            except BaseException as exc:  # SystemExit and KeyboardInterrupt fail the job only
                ok, value = False, exc
    finally:
        unbind_job(token)
    if not ok:
        return orjson.dumps([False, _describe(value)])
    try:
        return orjson.dumps([True, value])
    except TypeError:
        return orjson.dumps([True, repr(value)])


async def _guarded(handler: Callable[[Job], Any], job: Job) -> tuple[bool, Any]:
    try:
        return True, await handler(job)
    except BaseException as exc:  # caught here, before the event loop sees a SystemExit
        return False, exc


def _describe(exc: BaseException) -> dict[str, Any]:
    error: dict[str, Any] = {
        "t": type(exc).__name__, "m": str(exc),
        "tb": "".join(traceback.format_exception(exc))[-TRACEBACK_CHARS:]}
    if isinstance(exc, Retry):
        error.update(s="retry", m=exc.reason,
                     d=None if exc.delay is None else to_seconds(exc.delay))
    elif isinstance(exc, Discard):
        error.update(s="discard", m=exc.reason)
    elif isinstance(exc, RateLimited):
        error.update(s="rate_limited", d=to_seconds(exc.delay), q=exc.queue)
    return error
