"""The merged cursor of a partitioned queue's pages: one position per partition, opaque,
refused with a clear error when it is not one of this queue's."""

from __future__ import annotations

import pytest

from streamflow.browse import JobView
from streamflow.spread_jobs import decode_cursor, encode_cursor, order_key, position_after


def test_positions_round_trip_also_with_any_job_id() -> None:
    positions = [None, False, "high:1700000000000-3", "1700000000123:pay,Q1x9:ü"]
    cursor = encode_cursor(positions)
    assert cursor.startswith("p1.") and "," not in cursor and "/" not in cursor
    assert decode_cursor(cursor, 4) == positions
    assert decode_cursor(None, 3) == [None, None, None]


@pytest.mark.parametrize("cursor", ["normal:1-0", "p1.!!!", "p1." + "e30", "p1.WzFd"])
def test_a_cursor_of_another_kind_is_refused(cursor: str) -> None:
    with pytest.raises(ValueError, match="bad cursor"):
        decode_cursor(cursor, 2)


def test_a_cursor_of_another_partition_count_is_refused() -> None:
    with pytest.raises(ValueError, match="2 partitions"):
        decode_cursor(encode_cursor([None, None, None]), 2)


def _view(level: str, entry: str, due: int | None = None) -> JobView:
    return JobView(id=f"{level}:{entry}", name="n", level=level, state="waiting",
                   entry_id=entry, due_ms=due)


def test_order_follows_one_partitions_listing() -> None:
    levels = ("high", "normal", "low")
    views = [_view("normal", "5-0"), _view("high", "1-0"), _view("normal", "10-0"),
             _view("normal", "5-1")]
    newest = sorted(views, key=order_key("waiting", levels, newest_first=True))
    assert [v.entry_id for v in newest] == ["1-0", "10-0", "5-1", "5-0"]
    oldest = sorted(views, key=order_key("active", levels, newest_first=True))
    assert [v.entry_id for v in oldest] == ["1-0", "5-0", "5-1", "10-0"]
    assert position_after(views[0], "waiting") == "normal:5-0"
    assert position_after(_view("low", "", due=42), "delayed") == "42:low:"
