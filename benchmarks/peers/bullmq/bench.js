'use strict';
// BullMQ peer of the streamflow benchmarks. Driven by benchmarks/peers/peer_bullmq.py:
//   node bench.js enqueue <redis-url> <jobs>                -> {"seconds": s}   (Queue.addBulk)
//   node bench.js paced <redis-url> <count> <interval-ms>   -> {"seconds": s}   (Queue.add)
//   node bench.js single <redis-url> <adds> <callers>       -> {"seconds": s, "p50_ms", "p99_ms"}
//                                                  (Queue.add from <callers> concurrent callers)
//   node bench.js worker <redis-url> <concurrency>          runs until SIGTERM/SIGINT
// The worker reports like the Python workers (see common.py): every 100 ms it writes
// "count first_ns last_ns" into the hash BENCH_TRACK_KEY and pushes latencies (ns) onto
// BENCH_TRACK_KEY:lat, on the Redis in BENCH_TRACK_URL.

const { performance } = require('node:perf_hooks');
const { Queue, Worker } = require('bullmq');
const IORedis = require('ioredis');

const QUEUE = 'bench';
const CHUNK = 1000;
const PAD = 'x'.repeat(80);

// Wall-clock time in ns (a float: exact to well under a microsecond, plenty for ms latencies),
// comparable with Python's time.time_ns() on the same machine.
function nowNs() {
  return (performance.timeOrigin + performance.now()) * 1e6;
}

function connection(url) {
  const u = new URL(url);
  const db = Number((u.pathname || '/0').slice(1) || 0);
  return { host: u.hostname, port: Number(u.port || 6379), db, maxRetriesPerRequest: null };
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function enqueue(url, jobs) {
  const queue = new Queue(QUEUE, { connection: connection(url) });
  await queue.waitUntilReady();
  const start = performance.now();
  const chunks = [];
  for (let i = 0; i < jobs; i += CHUNK) {
    const batch = [];
    for (let j = i; j < Math.min(jobs, i + CHUNK); j++) {
      batch.push({ name: 'noop', data: { ts: 0, pad: PAD } });
    }
    chunks.push(queue.addBulk(batch));
  }
  await Promise.all(chunks);
  const seconds = (performance.now() - start) / 1000;
  await queue.close();
  return seconds;
}

async function paced(url, count, intervalMs) {
  const queue = new Queue(QUEUE, { connection: connection(url) });
  await queue.waitUntilReady();
  const start = performance.now();
  for (let i = 0; i < count; i++) {
    const delay = start + i * intervalMs - performance.now();
    if (delay > 0) await sleep(delay);
    await queue.add('noop', { ts: Math.round(nowNs()), pad: PAD });
  }
  const seconds = (performance.now() - start) / 1000;
  await queue.close();
  return seconds;
}

function percentile(sorted, q) {
  const rank = Math.max(1, Math.min(sorted.length, Math.ceil((q / 100) * sorted.length)));
  return sorted[rank - 1];
}

// Closed loop: each caller awaits its add before the next; one Queue (one ioredis connection,
// auto-pipelining as ioredis does by default for commands issued in the same tick).
async function single(url, adds, callers) {
  const queue = new Queue(QUEUE, { connection: connection(url) });
  await queue.waitUntilReady();
  for (let i = 0; i < 200; i++) await queue.add('noop', { ts: 0, pad: PAD });
  let remaining = adds;
  const latencies = [];
  const caller = async () => {
    while (remaining > 0) {
      remaining -= 1;
      const t0 = performance.now();
      await queue.add('noop', { ts: 0, pad: PAD });
      latencies.push(performance.now() - t0);
    }
  };
  const start = performance.now();
  await Promise.all(Array.from({ length: callers }, caller));
  const seconds = (performance.now() - start) / 1000;
  await queue.close();
  latencies.sort((a, b) => a - b);
  return { seconds, adds: latencies.length, p50_ms: percentile(latencies, 50),
    p99_ms: percentile(latencies, 99) };
}

async function worker(url, concurrency) {
  const trackKey = process.env.BENCH_TRACK_KEY;
  const reporter = new IORedis(process.env.BENCH_TRACK_URL);
  const field = `node-${process.pid}`;
  let count = 0;
  let first = 0;
  let last = 0;
  let latencies = [];
  let reported = -1;

  const w = new Worker(
    QUEUE,
    async (job) => {
      const now = nowNs();
      if (!first) first = now;
      count += 1;
      last = now;
      const ts = job.data && job.data.ts;
      if (ts) latencies.push(Math.round(now - ts));
    },
    { connection: connection(url), concurrency },
  );
  w.on('error', (err) => console.error('worker error', err));

  const timer = setInterval(async () => {
    if (count === reported && latencies.length === 0) return;
    const batch = latencies;
    latencies = [];
    const seen = count;
    const pipe = reporter.pipeline();
    if (batch.length) pipe.rpush(`${trackKey}:lat`, ...batch.map(String));
    pipe.hset(trackKey, field, `${seen} ${Math.round(first)} ${Math.round(last)}`);
    try {
      await pipe.exec();
      reported = seen;
    } catch (err) {
      latencies = batch.concat(latencies);
    }
  }, 100);

  let closing = false;
  const stop = async () => {
    if (closing) return;
    closing = true;
    clearInterval(timer);
    await w.close();
    await reporter.quit();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

async function main() {
  const [mode, url, a, b] = process.argv.slice(2);
  if (mode === 'enqueue') {
    console.log(JSON.stringify({ seconds: await enqueue(url, Number(a)) }));
  } else if (mode === 'paced') {
    console.log(JSON.stringify({ seconds: await paced(url, Number(a), Number(b)) }));
  } else if (mode === 'single') {
    console.log(JSON.stringify(await single(url, Number(a), Number(b))));
  } else if (mode === 'worker') {
    await worker(url, Number(a));
  } else {
    console.error('usage: node bench.js enqueue|paced|single|worker <redis-url> ...');
    process.exit(2);
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
