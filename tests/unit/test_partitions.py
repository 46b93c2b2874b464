"""Partition routing: the stable hash other producers must reproduce, partition sets."""

from __future__ import annotations

import pytest

from streamflow.partitions import (
    Routing,
    check_partitions,
    format_partition_set,
    parse_partition_set,
    partition_for,
    routing_hash,
)


def test_the_routing_hash_is_crc32_of_the_utf8_bytes() -> None:
    assert routing_hash("123456789") == 0xCBF43926  # CRC-32/ISO-HDLC check value
    assert routing_hash("pay_Q1x9") == 0x9C26912D
    assert routing_hash("ünï") == 0xDBC448EA
    assert [partition_for("pay_Q1x9", n) for n in (1, 3, 4, 16)] == [0, 0, 1, 13]


def test_keys_spread_evenly() -> None:
    counts = [0] * 8
    for i in range(80_000):
        counts[partition_for(f"pay_{i}", 8)] += 1
    assert min(counts) > 9_000 and max(counts) < 11_000


def test_routing_by_key_then_job_id_then_round_robin() -> None:
    routing = Routing(3)
    assert [routing.of(None, None) for _ in range(7)] == [0, 1, 2, 0, 1, 2, 0]
    assert routing.of("pay_1", "evt_9") == partition_for("pay_1", 3)
    assert routing.of(None, "evt_9") == partition_for("evt_9", 3)
    assert Routing(1).of("pay_1", None) == 0


@pytest.mark.parametrize("bad", [0, -1, 1025, True, 2.0, "4"])
def test_bad_partition_counts_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="partitions must be"):
        check_partitions(bad)  # type: ignore[arg-type]


def test_partition_sets() -> None:
    assert parse_partition_set("0-3") == (0, 1, 2, 3)
    assert parse_partition_set("5, 0-1,1") == (0, 1, 5)
    assert format_partition_set([5, 0, 1, 2]) == "0-2,5"
    assert parse_partition_set(format_partition_set([0, 2, 3, 4, 9])) == (0, 2, 3, 4, 9)


@pytest.mark.parametrize("text", ["", "a", "1-", "-2", "3-1", "1;2", "0-x"])
def test_bad_partition_sets_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="bad partition"):
        parse_partition_set(text)


def test_a_partition_outside_the_queue_is_refused() -> None:
    with pytest.raises(ValueError, match="partition 4 does not exist"):
        parse_partition_set("2-5", 4)
