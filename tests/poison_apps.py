"""Poison handlers for worker subprocesses (``--app tests.poison_apps:router``): each one
breaks its worker in another way. Each records its run in Redis (``<queue>:runs``: job id and
pid), so a test can tell which process ran what."""

from __future__ import annotations

import ctypes
import os
import sys
import time
from typing import Any

import redis

from streamflow import Discard, Job, Retry, Router

router = Router()
_client: redis.Redis | None = None


def _record(job: Job) -> None:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ["STREAMFLOW_REDIS_URL"])
    _client.rpush(f"{job.queue}:runs", f"{job.id}:{os.getpid()}")


@router.handler("ok")
async def ok(job: Job) -> int:
    _record(job)
    return os.getpid()


@router.handler("sys_exit")
def sys_exit(job: Job) -> None:
    _record(job)
    sys.exit(3)


@router.handler("sys_exit_async")
async def sys_exit_async(job: Job) -> None:
    _record(job)
    sys.exit("bye")


@router.handler("interrupt")
async def interrupt(job: Job) -> None:
    _record(job)
    raise KeyboardInterrupt


@router.handler("interrupt_sync")
def interrupt_sync(job: Job) -> None:
    _record(job)
    raise KeyboardInterrupt


@router.handler("hard_exit")
def hard_exit(job: Job) -> None:
    _record(job)
    os._exit(7)


@router.handler("segfault")
def segfault(job: Job) -> None:
    _record(job)
    ctypes.string_at(0)


@router.handler("sleep_sync")
def sleep_sync(job: Job) -> dict[str, Any]:
    _record(job)
    time.sleep(float(job.data["seconds"]))
    return {"pid": os.getpid()}


@router.handler("leak_url")
async def leak_url(job: Job) -> None:
    raise ConnectionError(f"cannot reach {job.data['url']}")


@router.handler("echo")
def echo(job: Job) -> dict[str, Any]:
    return {"data": job.data, "attempt": job.attempt, "pid": os.getpid()}


@router.handler("echo_async")
async def echo_async(job: Job) -> dict[str, Any]:
    return {"data": job.data, "pid": os.getpid()}


@router.handler("discard")
def discard(job: Job) -> None:
    raise Discard(f"card declined, see {job.data['url']}")


@router.handler("retry_once")
async def retry_once(job: Job) -> int:
    if job.attempt == 1:
        raise Retry(0.01, "provider busy")
    return job.attempt


@router.handler("spin")
def spin(job: Job) -> None:
    _record(job)
    while True:  # only a kill ends it
        pass


@router.handler("fail")
def fail(job: Job) -> None:
    raise ValueError(f"bad input {job.data}")
