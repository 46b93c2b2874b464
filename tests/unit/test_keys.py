"""QueueKeys: every key of a queue, under one Cluster hash tag."""

from __future__ import annotations

import dataclasses

import pytest
from redis.crc import key_slot

from streamflow.errors import InvalidQueueName
from streamflow.keys import QueueKeys


def test_default_layout_matches_the_design() -> None:
    keys = QueueKeys("payments")
    assert keys.streams == ("sf:{payments}:p:high", "sf:{payments}:p:normal",
                            "sf:{payments}:p:low")
    assert keys.level("normal") == "sf:{payments}:p:normal"
    assert (keys.delayed, keys.jobs, keys.dead, keys.events, keys.done, keys.workers,
            keys.repeat, keys.meta) == (
        "sf:{payments}:delayed", "sf:{payments}:jobs", "sf:{payments}:dead",
        "sf:{payments}:events", "sf:{payments}:done", "sf:{payments}:workers",
        "sf:{payments}:repeat", "sf:{payments}:meta")
    assert keys.dedup("evt_1") == "sf:{payments}:dedup:evt_1"
    assert keys.status("evt_1") == "sf:{payments}:status:evt_1"


def test_prefix_and_levels_are_configurable() -> None:
    keys = QueueKeys("q", prefix="pay", levels=("urgent", "bulk"))
    assert keys.streams == ("pay:{q}:p:urgent", "pay:{q}:p:bulk")
    assert keys.base == "pay:{q}"
    assert keys.dead == "pay:{q}:dead"


def test_every_key_of_a_queue_hashes_to_one_cluster_slot() -> None:
    keys = QueueKeys("orders")
    every = [*keys.streams, keys.delayed, keys.jobs, keys.dead, keys.events, keys.done,
             keys.workers, keys.repeat, keys.meta, keys.limiter, keys.dedup("x:y"),
             keys.status("z")]
    assert len(set(every)) == len(every)
    assert {key_slot(k.encode()) for k in every} == {key_slot(b"orders")}


def test_two_queues_never_share_a_key() -> None:
    a, b = QueueKeys("a"), QueueKeys("ab")
    keys_a = {*a.streams, a.delayed, a.jobs, a.dead, a.events, a.meta}
    keys_b = {*b.streams, b.delayed, b.jobs, b.dead, b.events, b.meta}
    assert not keys_a & keys_b


def test_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError):
        QueueKeys("q").level("urgent")


@pytest.mark.parametrize("name", ["", "a{b", "a}b", "a:b", "a b", "{q}", "*", "pay*", "a?b",
                                  "[ab]", "a\\b", "é", "q\n", "x" * 101])
def test_names_outside_letters_digits_dot_underscore_dash_are_refused(name: str) -> None:
    with pytest.raises(InvalidQueueName, match="invalid queue name"):
        QueueKeys(name)


@pytest.mark.parametrize("name", ["payments", "a", "pay.v2", "pay_out-EU", "0", "x" * 100])
def test_plain_names_are_accepted(name: str) -> None:
    assert QueueKeys(name).queue == name


def test_keys_are_frozen() -> None:
    keys = QueueKeys("q")
    with pytest.raises(dataclasses.FrozenInstanceError):
        keys.dead = "elsewhere"  # type: ignore[misc]


def test_a_glob_cannot_name_a_queue_so_obliterate_cannot_reach_other_queues() -> None:
    from streamflow import Queue, Worker

    with pytest.raises(InvalidQueueName):
        Queue("*", url="redis://127.0.0.1:1/0")  # nothing is contacted: refused at once
    with pytest.raises(InvalidQueueName):
        Worker("pay*", lambda job: None, url="redis://127.0.0.1:1/0")


def test_a_partition_has_the_whole_layout_under_its_own_hash_tag() -> None:
    from redis.crc import key_slot

    keys = QueueKeys("payments", partition=3)
    assert keys.level("high") == "sf:{payments#3}:p:high"
    assert keys.held("pay_1") == "sf:{payments#3}:held:pay_1"
    assert keys.keylocks == "sf:{payments#3}:keylocks"
    assert QueueKeys("payments").part(3) == keys
    same = {key_slot(k.encode()) for k in (*keys.streams, keys.delayed, keys.meta,
                                           keys.dedup("x"), keys.held("k"), keys.keylocks)}
    assert len(same) == 1
    slots = {key_slot(QueueKeys("payments", partition=i).meta.encode()) for i in range(8)}
    assert len(slots) == 8, "partitions sit on different slots"
