"""RabbitMQ through aio-pika: a durable classic queue, persistent messages published with
publisher confirms (windows of 1,000 unconfirmed publishes), one consumer process with
manual acks and a prefetch of 100.

Worker process: ``python -m benchmarks.peers.peer_rabbitmq worker``.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from typing import Any

import aio_pika

from .base import PY, Peer, package_version
from .common import TRACKER, env, payload

QUEUE = "streamflow-bench"
PREFETCH = 100
WINDOW = 1000


def amqp_url() -> str:
    return env("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


def message(data: dict[str, Any]) -> aio_pika.Message:
    return aio_pika.Message(json.dumps(data).encode(), content_type="application/json",
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT)


async def rabbitmqctl(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        "rabbitmqctl", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    except TimeoutError:
        proc.kill()
        raise
    if proc.returncode:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {err.decode().strip()[-300:]}")
    return out.decode()


async def queue_reading() -> tuple[int, int]:
    """(messages, memory bytes) of the benchmark queue, as rabbitmqctl reports them."""
    out = await rabbitmqctl("list_queues", "--quiet", "--no-table-headers",
                            "name", "messages", "memory")
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == QUEUE:
            return int(parts[1]), int(parts[2])
    raise RuntimeError(f"queue {QUEUE} not listed by rabbitmqctl")


class RabbitPeer(Peer):
    name = "rabbitmq"
    system = "RabbitMQ (aio-pika)"
    on_redis = False
    concurrency = f"asyncio consumer, prefetch_count={PREFETCH}, manual ack per message"
    settings = (f"durable classic queue, persistent messages, publisher confirms "
                f"(up to {WINDOW} in flight)")

    def __init__(self) -> None:
        self.connection: Any = None
        self.channel: Any = None
        self.queue: Any = None
        self.server_version = "?"
        self.mem_before = 0

    async def open(self) -> None:
        self.connection = await aio_pika.connect(amqp_url())
        props = self.connection.transport.connection.server_properties or {}
        version = props.get("version", "?")
        self.server_version = version.decode() if isinstance(version, bytes) else str(version)
        self.channel = await self.connection.channel()
        self.queue = await self.channel.declare_queue(QUEUE, durable=True)

    async def close(self) -> None:
        if self.queue is not None:
            await self.queue.delete(if_unused=False, if_empty=False)
        if self.connection is not None:
            await self.connection.close()

    async def reset(self) -> None:
        await self.queue.purge()
        try:
            self.mem_before = (await queue_reading())[1]
        except Exception:
            self.mem_before = 0

    async def enqueue_bulk(self, n: int) -> float | None:
        exchange = self.channel.default_exchange
        for start in range(0, n, WINDOW):
            await asyncio.gather(*(exchange.publish(message(payload()), routing_key=QUEUE)
                                   for _ in range(min(WINDOW, n - start))))
        return None

    async def enqueue_one(self, data: dict[str, Any]) -> None:
        await self.channel.default_exchange.publish(message(data), routing_key=QUEUE)

    def worker_command(self, workers: int = 1) -> list[str]:
        return [PY, "-m", "benchmarks.peers.peer_rabbitmq", "worker"]

    async def waiting_memory(self) -> tuple[int, str] | None:
        if not self.mem_before:
            raise RuntimeError("rabbitmqctl could not be read")
        _, memory = await queue_reading()
        return memory - self.mem_before, "queue process memory delta (rabbitmqctl list_queues)"

    def versions(self) -> dict[str, str]:
        return {"aio-pika": package_version("aio-pika"), "RabbitMQ server": self.server_version}


PEER = RabbitPeer()


async def run_worker() -> None:
    connection = await aio_pika.connect(amqp_url())
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=PREFETCH)
    queue = await channel.declare_queue(QUEUE, durable=True)

    async def on_message(msg: aio_pika.abc.AbstractIncomingMessage) -> None:
        TRACKER.hit(json.loads(msg.body))
        await msg.ack()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tag = await queue.consume(on_message)
    await stop.wait()
    await queue.cancel(tag)
    await connection.close()


if __name__ == "__main__" and sys.argv[1:] == ["worker"]:
    asyncio.run(run_worker())
