"""``make bench``: streamflow's hot path on a private redis-server, printed as a table.

Each figure is the median of ``--runs`` runs (min-max beside it); every measurement runs in its
own process.
"""

from __future__ import annotations

import argparse
import platform
import statistics
from typing import Any

import redis

from benchmarks.common import private_redis, run_child
from streamflow.cli._output import table


def spread(values: list[float], fmt: str) -> str:
    return f"{format(statistics.median(values), fmt)} ({format(min(values), fmt)}-" \
           f"{format(max(values), fmt)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--adds", type=int, default=10_000,
                        help="single adds per run of the single-add rows")
    args = parser.parse_args()
    rows: list[list[Any]] = []
    with private_redis() as url:
        version = redis.Redis.from_url(url).info("server")["redis_version"]
        runs: dict[str, list[dict[str, Any]]] = {"off": [], "api": [], "sdk": []}
        for _ in range(args.runs):
            for mode in runs:
                runs[mode].append(run_child(
                    "benchmarks.throughput", url, "--jobs", str(args.jobs), "--concurrency",
                    str(args.concurrency), "--tracing", mode))
        single: dict[tuple[int, bool], list[dict[str, Any]]] = {
            (200, False): [], (200, True): [], (1, False): []}
        for _ in range(args.runs):
            for callers, keyed in single:
                single[callers, keyed].append(run_child(
                    "benchmarks.single_add", url, "--adds",
                    str(args.adds if callers > 1 else args.adds // 4), "--callers",
                    str(callers), *(["--job-ids"] if keyed else [])))
        latency = [run_child("benchmarks.latency", url) for _ in range(args.runs)]
        memory = run_child("benchmarks.memory", url, "--jobs", "100000")
    off = runs["off"]
    rows.append(["bulk enqueue (add_bulk)", spread([r["enqueue_per_s"] for r in off], ",.0f"),
                 "jobs/s"])
    for mode, label in (("off", "no tracing"), ("api", "OTel API only"),
                        ("sdk", "OTel SDK + batch exporter")):
        rates = [r["process_per_s"] for r in runs[mode]]
        rows.append([f"process, 1 worker process, {label}", spread(rates, ",.0f"), "jobs/s"])
    base = statistics.median(r["process_per_s"] for r in off)
    for mode in ("api", "sdk"):
        rate = statistics.median(r["process_per_s"] for r in runs[mode])
        rows.append([f"tracing overhead ({mode})", f"{(1 - rate / base) * 100:.1f}", "%"])
    rows.append(["worker CPU per job", spread([r["worker_cpu_us_per_job"] for r in off], ".1f"),
                 "us"])
    rows.append(["Redis CPU per processed job (INFO cpu)",
                 spread([r["redis_cpu_us_per_job"] for r in off], ".1f"), "us"])
    for (callers, keyed), results in single.items():
        who = f"{callers} concurrent callers" if callers > 1 else "1 caller"
        if keyed:
            who += ", each with a job_id (the webhook's add)"
        rows.append([f"single add (Queue.add), {who}",
                     spread([r["adds_per_s"] for r in results], ",.0f"), "adds/s"])
        rows.append([f"single add latency p50, {who}",
                     spread([r["p50_ms"] for r in results], ".3f"), "ms"])
        rows.append([f"single add latency p99, {who}",
                     spread([r["p99_ms"] for r in results], ".3f"), "ms"])
        rows.append([f"Redis CPU per single add, {who} (INFO cpu)",
                     spread([r["redis_cpu_us_per_add"] for r in results], ".1f"), "us"])
        rows.append([f"Python CPU per single add, {who}",
                     spread([r["client_cpu_us_per_add"] for r in results], ".1f"), "us"])
    rows.append(["add-to-start latency p50 (1 job/ms)", spread([r["p50_ms"] for r in latency],
                                                                ".3f"), "ms"])
    rows.append(["add-to-start latency p99 (1 job/ms)", spread([r["p99_ms"] for r in latency],
                                                                ".3f"), "ms"])
    rows.append([f"Redis memory per waiting job ({memory['payload_bytes']} B payload)",
                 f"{memory['bytes_per_job']:.0f}", "bytes"])
    rows.append(["worker RSS after the run", spread([r["rss_mb"] for r in off], ".0f"), "MiB"])
    print(f"streamflow benchmark: {args.jobs:,} jobs, concurrency {args.concurrency}, "
          f"{args.runs} runs, Redis {version}, Python {platform.python_version()}, "
          f"{platform.machine()}")
    print(table(["measure", "median (min-max)", "unit"], rows))


if __name__ == "__main__":
    main()
