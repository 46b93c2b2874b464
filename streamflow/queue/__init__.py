"""Queue: the producer and admin handle of one queue, in parts.

``base``      settings, keys, client, lifecycle, consumer groups (``ensure_groups``)
``producer``  ``add``, ``add_bulk`` (``JobSpec``)
``admin``     pause, rate limits, repeats, drain, obliterate, dead-letter actions
``getters``   counts, pause state, jobs, repeats, dead letters
``partitioned`` routing over N partitions and the operations that span them
``ordered``   per-key order: the add of keyed jobs, the release when one ends
``layout``    the recorded partition count, counts summed over partitions
``migrate``   changing the partition count: moving the jobs (``streamflow partitions migrate``)
"""

from __future__ import annotations

from ..control import JobControl
from .base import CHUNK as CHUNK
from .base import QueueBase as QueueBase
from .base import ensure_groups as ensure_groups
from .partitioned import Partitioned
from .producer import JobSpec as JobSpec


class Queue(Partitioned, JobControl):
    """The handle producers and admins use: add jobs, pause, inspect, dead letters.

    Usage::

        async with Queue("payments", url="redis://localhost:6379") as q:
            job_id = await q.add("payment.captured", {"id": "pay_1"}, priority="high",
                                 job_id="evt_1")     # None: evt_1 was already added
            await q.add_bulk([("refund.created", {"id": "rfnd_1"}), ...])

    ``Queue("payments", partitions=8)`` spreads the queue over 8 partitions (Redis Cluster
    shards); ``add(..., key="pay_1")`` keeps the jobs of one key in one partition.
    """


__all__ = ["CHUNK", "JobSpec", "Queue", "QueueBase", "ensure_groups"]
