"""Partition routing: which partition of a queue a job goes to.

A queue of N partitions is N copies of the key layout, partition ``i`` under the hash tag
``{<queue>#<i>}``; on Redis Cluster each tag is one slot, so the partitions spread over the
shards. Routing must be the same in every producer, in every language, forever:

* a job with a ``key`` goes to ``crc32(utf8(key)) mod N``;
* else a job with a caller-given ``job_id`` goes to ``crc32(utf8(job_id)) mod N`` (so the dedup
  mark of an id always lives in one partition);
* else any partition will do: producers go round-robin.

``crc32`` is CRC-32/ISO-HDLC (the zlib, PNG and Ethernet CRC: polynomial 0x04C11DB7 reflected,
init and final xor 0xFFFFFFFF), taken as an unsigned 32-bit integer. It is
``zlib.crc32`` in Python, ``java.util.zip.CRC32`` in Java, ``hash/crc32.ChecksumIEEE`` in Go,
``zlib.crc32`` in Node >= 22 (or the ``crc-32`` package, ``>>> 0`` for unsigned), ``crc32`` in
PHP. Test vectors: ``crc32("123456789") = 0xCBF43926`` (the CRC's check value);
``crc32("pay_Q1x9") = 0x9C26912D``, so partition 1 of 4, 0 of 3, 13 of 16 (the unit test pins
them).

When both a key and a job id are given, the key routes, and the dedup mark of the id lives in
the key's partition: a caller must always send one job id with the same key (a webhook's event
id and its payment id never change, so redeliveries dedup).
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Iterable

MAX_PARTITIONS = 1024
"""More partitions than this only add per-partition overhead (a fetch and a promoter each)."""


def routing_hash(value: str) -> int:
    """CRC-32 (zlib) of the UTF-8 bytes of ``value``, unsigned."""
    return zlib.crc32(value.encode("utf-8"))


def partition_for(value: str, partitions: int) -> int:
    """The partition of a routing value (a job's key, else its id) in a queue of
    ``partitions`` partitions."""
    return routing_hash(value) % partitions


class Routing:
    """The partition of a job among ``partitions``: by its key, else by its job id, else
    round-robin (0, 1, ..., N-1, 0, ... per producer)."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self._next = itertools.cycle(range(partitions))

    def of(self, key: str | None, job_id: str | None) -> int:
        """The partition of a job with this ``key`` and ``job_id`` (either may be None)."""
        if self.partitions == 1:
            return 0
        if key is not None:
            return partition_for(key, self.partitions)
        if job_id is not None:
            return partition_for(job_id, self.partitions)
        return next(self._next)


def check_partitions(partitions: int) -> int:
    """``partitions`` if it is a valid partition count (1..MAX_PARTITIONS), else ValueError."""
    if isinstance(partitions, bool) or not isinstance(partitions, int) or not (
            1 <= partitions <= MAX_PARTITIONS):
        raise ValueError(f"partitions must be an integer from 1 to {MAX_PARTITIONS}, "
                         f"not {partitions!r}")
    return partitions


def parse_partition_set(text: str, partitions: int | None = None) -> tuple[int, ...]:
    """Partition numbers from ``"0-3"``, ``"0,2,5-7"``; sorted, unique.

    ValueError with a one-line reason for anything else, or for a number ``>= partitions``
    when the count is known.
    """
    chosen: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        first, dash, last = part.partition("-")
        if not first.isdigit() or (dash and not last.isdigit()):
            raise ValueError(f"bad partition set {text!r}: use numbers and ranges like 0-3,5")
        low, high = int(first), int(last) if dash else int(first)
        if high < low:
            raise ValueError(f"bad partition range {part!r}: the end is before the start")
        chosen.update(range(low, high + 1))
    if partitions is not None:
        outside = sorted(p for p in chosen if p >= partitions)
        if outside:
            raise ValueError(f"partition {outside[0]} does not exist: the queue has "
                             f"{partitions} (0-{partitions - 1})")
    return tuple(sorted(chosen))


def format_partition_set(numbers: Iterable[int]) -> str:
    """The inverse of `parse_partition_set`: ``[0, 1, 2, 5]`` -> ``"0-2,5"``."""
    ranges: list[str] = []
    for _, run in itertools.groupby(enumerate(sorted(set(numbers))), lambda p: p[1] - p[0]):
        values = [value for _, value in run]
        ranges.append(f"{values[0]}-{values[-1]}" if len(values) > 1 else str(values[0]))
    return ",".join(ranges)
