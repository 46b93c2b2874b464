"""The worker: a consumer-group runner, in parts.

``front``     the public ``Worker``: run, close, ready, signals, shutdown order
``fetcher``   the one path that takes entries: the fetch script (pause, rate limit, strict
              priority, free capacity); an idle worker waits in XREAD, which claims nothing
``wake``      the idle worker's XREAD and next fetch-script call, sent in one write
``dispatch``  fetched entries -> ready queue -> ``concurrency`` long-lived runners
``execute``   one job: handler (async, or sync in a thread) under its deadline -> outcome
``threads``   daemon threads for plain-function handlers; abandoned ones counted and capped
``isolation`` ``isolation="process"``: handlers in child processes; a crash fails one job
``decide``    what a failure means (retry later, dead letter, rate limited): a pure function
``acker``     outcomes sent in one pipeline per round, every result checked; final flush
``loops``     promoter, reclaimer + keep-alive, heartbeat, janitor
``partitioned`` a partitioned queue: one partition worker per partition, sharing capacity
"""

from __future__ import annotations

from .front import Worker as Worker

__all__ = ["Worker"]
