"""The table (stdout), docs/benchmarks.md and docs/benchmarks.png of a peers run."""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .common import median

if TYPE_CHECKING:
    from .run import PeerResult

BASELINE = "bullmq"
# metric key, column title, unit formatter, higher is better
METRICS: list[tuple[str, str, str, bool]] = [
    ("enqueue", "(a) enqueue jobs/s", "rate", True),
    ("process", "(b) process jobs/s, 1 worker process", "rate", True),
    ("p50", "(c) latency p50 ms", "ms", False),
    ("p99", "(c) latency p99 ms", "ms", False),
    ("memory", "(d) MB per 100k waiting", "mb", False),
]


def fmt(value: float, unit: str) -> str:
    if unit == "rate":
        return f"{value:,.0f}"
    if unit == "mb":
        return f"{value / 1e6:.1f}"
    return f"{value:.2f}" if value < 100 else f"{value:,.0f}"


def cell(values: list[float] | None, unit: str) -> str:
    if not values:
        return "—"
    mid = fmt(median(values), unit)
    if len(values) == 1:
        return mid
    return f"{mid} ({fmt(min(values), unit)}-{fmt(max(values), unit)})"


def command(*cmd: str) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
        return (out.stdout or out.stderr).strip()
    except (OSError, subprocess.TimeoutExpired):
        return "n/a"


def redis_server_info(url: str) -> dict[str, str]:
    import redis

    client = redis.Redis.from_url(url)
    try:
        info = client.info("server")
        return {"version": str(info.get("redis_version", "?")),
                "mode": str(info.get("redis_mode", "?")),
                "allocator": str(client.info("memory").get("mem_allocator", "?"))}
    finally:
        client.close()


def machine() -> list[str]:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    free = command("free", "-h").splitlines()
    return [
        f"CPU: {model}; nproc {command('nproc')}",
        f"memory (`free -h`): {' / '.join(' '.join(r.split()) for r in free[:2])}",
        f"kernel: {command('uname', '-srmo')}",
        f"Python {platform.python_version()} ({sys.executable}), "
        f"Node {command('node', '--version')}",
        "load average (1, 5, 15 min) when the report was written: "
        + ", ".join(f"{x:.2f}" for x in os.getloadavg())
        + " (above the core count, something else shared the machine during the run)",
    ]


class Report:
    def __init__(self, args: argparse.Namespace, results: dict[str, PeerResult],
                 redis_info: dict[str, str], wall: float) -> None:
        self.args = args
        self.results = results
        self.redis_info = redis_info
        self.wall = wall
        self.when = time.strftime("%Y-%m-%d %H:%M %Z")

    def ran(self) -> list[PeerResult]:
        return [r for r in self.results.values() if r.runs]

    def ratio(self, result: PeerResult, metric: str) -> str:
        base = self.results.get(BASELINE)
        mine = result.values.get(metric)
        theirs = base.values.get(metric) if base else None
        if not mine or not theirs:
            return "—"
        return f"{median(mine) / median(theirs):.2f}x"

    def rows(self) -> list[list[str]]:
        rows = []
        for r in self.ran():
            cells = [cell(r.values.get(k), u) for k, _, u, _ in METRICS]
            rows.append([r.name, str(r.runs), *cells,
                         self.ratio(r, "enqueue"), self.ratio(r, "process")])
        return rows

    def header(self) -> list[str]:
        return (["peer", "runs"] + [title for _, title, _, _ in METRICS]
                + ["enqueue vs BullMQ", "process vs BullMQ"])

    def scaling_rows(self) -> list[list[str]]:
        r = self.results.get("streamflow")
        if not r or not r.runs:
            return []
        rows = []
        for key, procs in [("process", 1)] + [(f"process_w{n}", n) for n in self.scale()]:
            values = r.values.get(key)
            if values:
                rows.append([str(procs), cell(values, "rate"), self.ratio_to(values, "process")])
        return rows

    def single_rows(self) -> list[list[str]]:
        rows = []
        for r in self.ran():
            if "single" not in r.values:
                continue
            rows.append([r.name, cell(r.values["single"], "rate"),
                         cell(r.values.get("single_p50"), "ms"),
                         cell(r.values.get("single_p99"), "ms"),
                         cell(r.values.get("single_cpu"), "ms"), self.ratio(r, "single")])
        return rows

    def ratio_to(self, values: list[float], metric: str) -> str:
        base = self.results.get(BASELINE)
        theirs = base.values.get(metric) if base else None
        return f"{median(values) / median(theirs):.2f}x" if theirs else "—"

    def scale(self) -> list[int]:
        return [int(x) for x in str(self.args.scale).split(",") if x.strip()]

    def not_run(self) -> list[tuple[str, str]]:
        return [(r.name, r.skipped) for r in self.results.values() if r.skipped]

    def console(self) -> str:
        header, rows = self.header(), self.rows()
        widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h)
                  for i, h in enumerate(header)]
        lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
        lines.append("  ".join("-" * w for w in widths))
        lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
        for procs, rate, ratio in self.scaling_rows():
            lines.append(f"streamflow with {procs} worker process(es): {rate} jobs/s "
                         f"({ratio} BullMQ)")
        for name, rate, p50, p99, cpu, ratio in self.single_rows():
            lines.append(f"(f) {name} single add: {rate} adds/s, p50 {p50} ms, p99 {p99} ms, "
                         f"Redis CPU {cpu} us/add ({ratio} BullMQ)")
        for name, why in self.not_run():
            lines.append(f"NOT RUN {name}: {why}")
        for r in self.results.values():
            for error in r.errors:
                lines.append(f"error {r.name}: {error.splitlines()[0][:300]}")
            if "budget" in r.extra:
                lines.append(f"budget {r.name}: {r.extra['budget']}")
        lines.append(f"median of {self.args.runs} runs (min-max); {self.args.jobs:,} jobs; "
                     f"wall time {self.wall:.0f}s")
        return "\n".join(lines)

    def markdown(self) -> str:
        a = self.args
        md = [
            "# Benchmarks against peers",
            "",
            f"Generated by `python -m benchmarks.peers.run` (`make bench-peers`) on {self.when}; "
            f"wall time {self.wall:.0f} s. Options: `--runs {a.runs} --jobs {a.jobs} "
            f"--latency-seconds {a.latency_seconds:g} --latency-rate {a.latency_rate:g} "
            f"--scale {a.scale}`. Each figure is the median of the runs, with min-max.",
            "",
            "Workloads, each system through its own client API on this one machine:",
            "",
            f"- **(a) enqueue**: {a.jobs:,} jobs with a ~100-byte JSON payload, with the bulk API "
            "where the system has one (otherwise its one-job call, 50 at once), jobs/s.",
            "- **(b) process**: those jobs, ONE worker process, a no-op handler, the concurrency "
            "stated below; jobs/s from the first handler start to the last one (as the "
            "handlers saw it, reported by each worker process).",
            f"- **(c) latency**: enqueue-to-start at light load, one job every "
            f"{1000 / a.latency_rate:g} ms for {a.latency_seconds:g} s, the enqueue time "
            "(ns) in the payload, measured in the handler against the same clock. After 20 "
            "warm-up jobs.",
            "- **(d) memory**: what the server holds per 100,000 waiting jobs, from the (a) "
            f"backlog of {a.jobs:,} (scaled linearly): Redis `INFO memory` used_memory delta on a "
            "private redis-server (no RDB, no AOF); RabbitMQ: the queue process memory from "
            "`rabbitmqctl list_queues memory`; PostgreSQL: table + index size on disk.",
            "- **(e)** streamflow's (b) with more worker processes.",
            f"- **(f) single add**: {a.single_adds:,} one-job adds (the system's single add "
            f"call, as a webhook producer makes them) from {a.single_callers} concurrent "
            "callers of one process, each awaiting its add before the next; adds/s, the "
            "latency of each add, and for Redis peers the server's CPU per add (`INFO cpu`, "
            "user + sys, of the private server).",
            "",
            "## Results",
            "",
        ]
        md += table(self.header(), self.rows())
        md += ["", "Ratios are medians over BullMQ's medians from the same run (>1 is more "
               "jobs/s)."]
        if (offered := self.offered_notes()):
            md += ["", "Offered rate in (c), jobs/s actually added: " + offered + ". A system "
                   "whose (b) rate is near the offered rate builds a backlog in (c): its "
                   "latency then measures queueing, not dispatch."]
        scaling = self.scaling_rows()
        if scaling:
            md += ["", "### (e) streamflow with more worker processes", ""]
            md += table(["worker processes", "process jobs/s", "vs BullMQ (1 process)"], scaling)
            md += ["", f"On {os.cpu_count()} cores, shared with redis-server: more processes "
                   "than cores cannot scale linearly."]
        single = self.single_rows()
        if single:
            md += ["", f"### (f) single add, {a.single_callers} concurrent callers", ""]
            md += table(["peer", "adds/s", "add latency p50 ms", "add latency p99 ms",
                         "Redis CPU per add, us", "adds/s vs BullMQ"], single)
        md += ["", "## Peers, versions and settings", ""]
        rows = []
        for r in self.results.values():
            info = r.info
            versions = ", ".join(f"{k} {v}" for k, v in info.get("versions", {}).items())
            memory_source = r.extra.get("memory_source", "")
            rows.append([r.name, info.get("system", ""), versions, info.get("concurrency", ""),
                         "; ".join(filter(None, [info.get("settings", ""), memory_source]))])
        md += table(["peer", "system", "versions", "worker concurrency", "settings"], rows)
        md += ["", "## Not run, errors, skipped runs", ""]
        notes = [f"- **{name}** could not run: {why}" for name, why in self.not_run()]
        for r in self.results.values():
            notes += [f"- {r.name}: {e.splitlines()[0][:400]}" for e in r.errors]
            if "budget" in r.extra:
                notes.append(f"- {r.name}: {r.extra['budget']}")
        md += notes or ["None: every peer ran every run."]
        md += ["", "## Machine and servers", ""]
        md += [f"- {line}" for line in machine()]
        ri = self.redis_info
        md += [f"- Redis {ri.get('version', '?')} ({ri.get('mode', '?')}, "
               f"{ri.get('allocator', '?')}), a private redis-server started for the run: "
               "`--save \"\" --appendonly no --maxmemory-policy noeviction`, loopback",
               "- RabbitMQ and PostgreSQL: the local servers on 127.0.0.1 (versions in the "
               "table above)",
               "",
               "## Reading these numbers",
               "",
               "- Producer, worker(s) and servers share the same two cores, so every figure "
               "includes that contention; compare the ratios, which come from the same run, "
               "more than the absolute numbers.",
               "- Only defaults a user would keep were kept; every change is in the settings "
               "column (BullMQ concurrency 100 instead of 1; arq poll_delay 10 ms instead of "
               "0.5 s, which would cap it at 200 jobs/s).",
               "- Peers without a bulk add were fed by 50 concurrent one-job calls, the usual "
               "way to add many jobs with them.",
               "- PostgreSQL's (d) is disk, not RAM; Redis and RabbitMQ figures are RAM.",
               ""]
        return "\n".join(md)

    def offered_notes(self) -> str:
        parts = []
        for r in self.ran():
            offered = r.values.get("offered")
            if offered:
                parts.append(f"{r.name} {median(offered):,.0f}")
        return ", ".join(parts)

    def chart(self, path: str) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        ran = self.ran()
        if not ran:
            return
        names = [r.name for r in ran]
        panels = [("enqueue", "(a) enqueue, jobs/s", 1.0, False),
                  ("process", "(b) process, 1 worker process, jobs/s", 1.0, False),
                  ("p50", "(c) enqueue-to-start p50 / p99, ms (log)", 1.0, True),
                  ("memory", "(d) MB per 100k waiting jobs", 1e-6, False)]
        fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
        colors = ["#d62728" if n == "streamflow" else "#1f77b4" if n == BASELINE else "#7f7f7f"
                  for n in names]
        for ax, (metric, title, scale, log) in zip(axes.flat, panels, strict=True):
            keys = [metric, "p99"] if metric == "p50" else [metric]
            width = 0.8 / len(keys)
            for k, key in enumerate(keys):
                mids, lows, highs = [], [], []
                for r in ran:
                    values = r.values.get(key) or [float("nan")]
                    mid = median(values) * scale
                    mids.append(mid)
                    lows.append(mid - min(values) * scale)
                    highs.append(max(values) * scale - mid)
                xs = [i + (k - (len(keys) - 1) / 2) * width for i in range(len(names))]
                ax.bar(xs, mids, width, color=colors, alpha=1.0 if k == 0 else 0.5,
                       yerr=[lows, highs], capsize=3, label=key if len(keys) > 1 else None)
            ax.set_title(title, fontsize=10)
            ax.set_xticks(range(len(names)))
            ax.set_xticklabels(names, rotation=30, ha="right", fontsize=9)
            if log:
                ax.set_yscale("log")
                ax.legend(fontsize=8)
            ax.grid(axis="y", alpha=0.3)
        fig.suptitle(f"streamflow vs peers — {self.args.jobs:,} jobs, median of "
                     f"{self.args.runs} runs (bars: min-max), {os.cpu_count()} cores, {self.when}",
                     fontsize=11)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    def esc(text: Any) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    out = ["| " + " | ".join(esc(h) for h in header) + " |",
           "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return out
