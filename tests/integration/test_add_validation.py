"""Bad input to ``add`` is refused at the boundary: one clear line, nothing written."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamflow import JobSpec, Queue, StreamflowError
from streamflow.errors import InvalidJob, PayloadNotSerializable

pytestmark = pytest.mark.anyio


async def _nothing_written(q: Queue) -> bool:
    return not [key async for key in q.client.scan_iter(match=f"*{q.name}*", count=1000)]


BAD_CALLS = [
    ({"data": {"amount": float("nan")}}, PayloadNotSerializable, "NaN"),
    ({"data": [1.0, {"x": math.inf}]}, PayloadNotSerializable, "infinity"),
    ({"timeout": -1}, InvalidJob, "timeout"),
    ({"timeout": math.nan}, InvalidJob, "timeout"),
    ({"attempts": 0}, InvalidJob, "attempts"),
    ({"attempts": 2.5}, InvalidJob, "attempts"),
    ({"name": "pay\ud800ment"}, InvalidJob, "surrogate"),
    ({"job_id": "evt\udc00"}, InvalidJob, "surrogate"),
    ({"job_id": ""}, InvalidJob, "job_id"),
    ({"name": ""}, InvalidJob, "name"),
    ({"name": 42}, InvalidJob, "name"),
    ({"delay": math.inf}, InvalidJob, "delay"),
    ({"delay": "soon"}, InvalidJob, "delay"),
    ({"backoff": "exponential"}, InvalidJob, "backoff"),
    ({"durability": "fsync"}, InvalidJob, "durability"),
    ({"job_id": "x" * 1025}, InvalidJob, "job_id"),
]


@pytest.mark.parametrize("kwargs, error, words", BAD_CALLS)
async def test_bad_input_is_one_line_and_writes_nothing(
        redis_url: str, queue_name: str, kwargs: dict[str, Any], error: type[Exception],
        words: str) -> None:
    call = {"name": "payment.captured", "data": {"id": "pay_1"}, **kwargs}
    async with Queue(queue_name, url=redis_url) as q:
        await q.client.delete(*q.keys.streams)
        with pytest.raises(error, match=words) as caught:
            await q.add(call.pop("name"), call.pop("data"), **call)
        assert "\n" not in str(caught.value)
        with pytest.raises(error, match=words):  # a bad job refuses its whole bulk
            await q.add_bulk([JobSpec("ok", {}), JobSpec(
                kwargs.get("name", "n"), kwargs.get("data"),
                **{k: v for k, v in kwargs.items()
                   if k not in ("name", "data", "durability")})]
                if "durability" not in kwargs else [("ok", {})],
                **({"durability": kwargs["durability"]} if "durability" in kwargs else {}))
        assert await _nothing_written(q)


@pytest.mark.parametrize("kwargs, error, words", BAD_CALLS)
async def test_an_ordered_add_refuses_what_any_add_refuses(
        redis_url: str, queue_name: str, kwargs: dict[str, Any], error: type[Exception],
        words: str) -> None:
    call = {"name": "payment.captured", "data": {"id": "pay_1"}, **kwargs}
    async with Queue(queue_name, url=redis_url, ordered=True) as q:
        with pytest.raises(error, match=words) as caught:
            await q.add(call.pop("name"), call.pop("data"), key="pay_1", **call)
        assert "\n" not in str(caught.value)
        counts = await q.counts()
        assert (counts["waiting"], counts["held"], counts["delayed"]) == (0, 0, 0)
        await q.obliterate(force=True)


BAD: dict[str, st.SearchStrategy[Any]] = {
    "name": st.one_of(st.just(""), st.integers(), st.none(), st.binary(min_size=1),
                      st.text(st.characters(categories=["Cs"]), min_size=1)),
    "data": st.one_of(
        st.sampled_from([math.nan, math.inf, -math.inf]).flatmap(
            lambda bad: st.recursive(st.just(bad), lambda inner: st.one_of(
                st.lists(inner, min_size=1, max_size=3),
                st.dictionaries(st.text(max_size=5), inner, min_size=1, max_size=3)),
                max_leaves=4)),
        st.builds(object), st.sets(st.integers(), min_size=1),
        st.integers(min_value=2**64), st.text(st.characters(categories=["Cs"]), min_size=1)),
    "priority": st.one_of(st.text(max_size=8).filter(
        lambda p: p not in ("high", "normal", "low")), st.integers()),
    "job_id": st.one_of(st.just(""), st.integers(), st.text(
        st.characters(categories=["Cs"]), min_size=1), st.just("x" * 2000)),
    "attempts": st.one_of(st.integers(max_value=0), st.floats(), st.text(max_size=3)),
    "timeout": st.one_of(st.floats(max_value=0), st.just(math.nan), st.just(math.inf),
                         st.text(max_size=3)),
    "delay": st.one_of(st.just(math.nan), st.just(math.inf), st.floats(min_value=1e10,
                                                                        allow_infinity=False),
                       st.text(max_size=3), st.just(timedelta.max)),
    "backoff": st.one_of(st.text(max_size=5), st.integers(), st.just((1, 2))),
}


@st.composite
def bad_add(draw: st.DrawFn) -> dict[str, Any]:
    """A valid add with one argument (or more) replaced by a bad value."""
    call: dict[str, Any] = {"name": "payment.captured", "data": {"id": "pay_1"}}
    for field in draw(st.lists(st.sampled_from(sorted(BAD)), min_size=1, max_size=3,
                               unique=True)):
        call[field] = draw(BAD[field])
    if draw(st.booleans()):
        call.setdefault("job_id", "evt_fuzz")
    return call


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(call=bad_add())
def test_generated_bad_adds_are_refused_before_anything_is_written(
        redis_url: str, queue_name: str, call: dict[str, Any]) -> None:
    async def attempt() -> None:
        async with Queue(queue_name, url=redis_url) as q:
            await q.client.delete(*q.keys.streams)  # the group, created on enter, is no job
            name, data = call.pop("name"), call.pop("data")
            with pytest.raises(StreamflowError) as caught:
                await q.add(name, data, **call)
            message = str(caught.value)
            assert message and "\n" not in message
            assert await _nothing_written(q)

    anyio.run(attempt)


@pytest.mark.parametrize("bad, error, words", [
    (("n", {"x": math.nan}), PayloadNotSerializable, "NaN"),
    (("n", object()), PayloadNotSerializable, "not JSON-serializable"),
    ((42, {}), InvalidJob, "name"),
    (("", {}), InvalidJob, "name"),
    (("n", "x" * 600_000), StreamflowError, "over the limit"),
    (("n", 1, 2), InvalidJob, "JobSpec or a"),
    ({"name": "n"}, InvalidJob, "JobSpec or a"),
])
async def test_one_bad_pair_at_the_end_of_a_bulk_add_writes_nothing(
        redis_url: str, queue_name: str, bad: Any, error: type[Exception], words: str) -> None:
    async with Queue(queue_name, url=redis_url) as q:
        await q.client.delete(*q.keys.streams)
        with pytest.raises(error, match=words):
            await q.add_bulk([("n", {"i": i}) for i in range(2500)] + [bad])
        assert await _nothing_written(q)


@pytest.mark.parametrize("layout", [{}, {"partitions": 2}, {"ordered": True}])
@pytest.mark.parametrize("bad", [None, 42, (), ("n", 1, 2), "ab"])
async def test_a_bulk_job_that_is_no_job_is_refused_clearly(
        redis_url: str, queue_name: str, bad: Any, layout: dict[str, Any]) -> None:
    async with Queue(queue_name, url=redis_url, **layout) as q:
        for jobs in ([bad, ("n", {})], [("n", {}), bad]):
            with pytest.raises(InvalidJob, match="JobSpec or a"):
                await q.add_bulk(jobs)
        streams = [stream for part in q.partition_keys for stream in part.streams]
        assert [await q.client.xlen(stream) for stream in streams] == [0] * len(streams)
        await q.obliterate(force=True)
