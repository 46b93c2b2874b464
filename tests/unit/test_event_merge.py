"""Merging the events of several partitions' streams: by id, and never past what a stream
that filled its read may still hold."""

from __future__ import annotations

from streamflow.events import QueueEvent, merge_events


def ev(partition: int, ms: int, seq: int = 0) -> QueueEvent:
    return QueueEvent(f"{ms}-{seq}", "added", {}, partition)


def test_merged_by_id_then_partition_and_cut_to_count() -> None:
    a = [ev(0, 10), ev(0, 30), ev(0, 30, 1)]
    b = [ev(1, 20), ev(1, 30)]
    assert [(e.partition, e.id) for e in merge_events([a, b])] == [
        (0, "10-0"), (1, "20-0"), (0, "30-0"), (1, "30-0"), (0, "30-1")]
    assert [e.id for e in merge_events([a, b], 2)] == ["10-0", "20-0"]


def test_nothing_after_the_end_of_a_stream_that_filled_its_read() -> None:
    full = [ev(0, 10), ev(0, 20)]           # read with COUNT 2: 0 may hold 25 next
    short = [ev(1, 15), ev(1, 25), ev(1, 40)]
    kept = merge_events([full, short[:1]], read=2)
    assert [e.id for e in kept] == ["10-0", "15-0", "20-0"]
    kept = merge_events([full, short], read=3)  # only 1 filled COUNT 3, ending at 40
    assert [e.id for e in kept] == ["10-0", "15-0", "20-0", "25-0", "40-0"]
    kept = merge_events([full, short], read=2)  # both filled: up to the earlier end, 20
    assert [e.id for e in kept] == ["10-0", "15-0", "20-0"]
    # what is kept of each stream is a prefix of it: one position per stream stays sound
    for batch in (full, short):
        mine = [e for e in kept if e.partition == batch[0].partition]
        assert mine == list(batch[:len(mine)])
