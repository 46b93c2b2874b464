"""Redis memory the job control plane adds per job: the ``where`` record of a job with an id,
the business-key index (one or two keys per job, unique values as payment ids are), and the
per-minute metrics hash. INFO used_memory before/after adding jobs on a private redis-server,
plus MEMORY USAGE of single keys. Runs on demand (about 20 s):

    python -m benchmarks.steer_memory [--jobs 50000]
"""

from __future__ import annotations

import argparse

import anyio

from benchmarks.common import PAYLOAD, private_redis
from streamflow import JobSpec, Queue, StreamflowSettings


async def _used(q: Queue) -> int:
    return int((await q.client.info("memory"))["used_memory"])


async def _per_job(q: Queue, specs: list[JobSpec]) -> float:
    before = await _used(q)
    for start in range(0, len(specs), 5000):
        await q.add_bulk(specs[start:start + 5000])
    return (await _used(q) - before) / len(specs)


async def main(jobs: int) -> None:
    with private_redis() as url:
        rows: list[tuple[str, float]] = []
        for label, make in (
            ("plain job (no id)", lambda n: JobSpec("payment.captured", PAYLOAD)),
            ("job with a caller id", lambda n: JobSpec("payment.captured", PAYLOAD,
                                                       job_id=f"evt_{n:010d}")),
            ("job with an id + 1 index key", lambda n: JobSpec(
                "payment.captured", PAYLOAD, job_id=f"evt_{n:010d}",
                index={"payment_id": f"pay_{n:014d}"})),
            ("job with an id + 2 index keys", lambda n: JobSpec(
                "payment.captured", PAYLOAD, job_id=f"evt_{n:010d}",
                index={"payment_id": f"pay_{n:014d}", "order_id": f"order_{n:014d}"})),
        ):
            settings = StreamflowSettings.from_url(url, prefix=f"m{len(rows)}")
            settings.queue.events = "none"
            async with Queue("memory", settings=settings) as q:
                rows.append((label, await _per_job(q, [make(n) for n in range(jobs)])))
                if label.endswith("2 index keys"):
                    sample_where = await q.client.memory_usage(q.keys.where)
                    sample_index = await q.client.memory_usage(
                        q.keys.index("payment_id", f"pay_{0:014d}"))
                    await q.client.hincrby(q.keys.metrics_minute(0), "c", 123456)
                    await q.client.hincrby(q.keys.metrics_minute(0), "f", 12)
                    await q.client.pexpire(q.keys.metrics_minute(0), 86_400_000)
                    minute = await q.client.memory_usage(q.keys.metrics_minute(0))
        base = rows[0][1]
        print(f"{jobs:,} jobs per case, payload {len(str(PAYLOAD))} chars")
        print(f"{'case':<32} {'bytes/job':>10} {'added vs plain':>15}")
        for label, per_job in rows:
            print(f"{label:<32} {per_job:>10.0f} {per_job - base:>15.0f}")
        print(f"where hash ({jobs:,} fields): MEMORY USAGE {sample_where:,} bytes "
              f"= {sample_where / jobs:.0f}/job")
        print(f"one index key (1 job): MEMORY USAGE {sample_index} bytes")
        print(f"one minute of metrics (hash c, f with TTL): MEMORY USAGE {minute} bytes; "
              f"a 24 h window: {minute * 1440:,} bytes per queue, nothing per job")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=50_000)
    anyio.run(main, parser.parse_args().jobs)
