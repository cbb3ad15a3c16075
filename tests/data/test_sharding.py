"""Range planning: every record read by exactly one consumer, or equal shares for DDP training."""

from __future__ import annotations

import logging

from vidistill.data.sharding import _log_dropped, dropped_records, plan_ranges


def test_plan_ranges_partitions_the_records():
    counts = [5, 0, 7, 3]
    for consumers in (1, 2, 3, 4, 7, 20):
        parts = [
            plan_ranges(counts, [2, 0, 3, 1], c, consumers, equal=False) for c in range(consumers)
        ]
        flat = [(f, i) for part in parts for f, lo, hi in part for i in range(lo, hi)]
        assert sorted(flat) == sorted((f, i) for f, n in enumerate(counts) for i in range(n))
        sizes = [sum(hi - lo for _, lo, hi in part) for part in parts]
        assert max(sizes) - min(sizes) <= 1
        equal = [
            sum(
                hi - lo for _, lo, hi in plan_ranges(counts, [0, 1, 2, 3], c, consumers, equal=True)
            )
            for c in range(consumers)
        ]
        assert len(set(equal)) == 1 and equal[0] == 15 // consumers


def test_equal_shares_drop_the_last_records_of_the_order_and_log_them(caplog):
    counts, order = [7, 3, 11, 5], [2, 0, 3, 1]  # 26 records, 4 consumers of 6: 2 dropped
    dropped = dropped_records(counts, order, 4)
    assert dropped == [(1, 1, 3)]  # file 1 comes last in the order
    shares = [plan_ranges(counts, order, c, 4, equal=True) for c in range(4)]
    read = [(f, i) for share in shares for f, lo, hi in share for i in range(lo, hi)]
    left_out = [(f, i) for f, lo, hi in dropped for i in range(lo, hi)]
    assert sorted(read + left_out) == [(f, i) for f, n in enumerate(counts) for i in range(n)]

    names = ["a.tfrecord", "b.tfrecord", "c.tfrecord", "d.tfrecord"]
    _log_dropped.cache_clear()  # each plan is logged once per process
    with caplog.at_level(logging.INFO, logger="vidistill.data.sharding"):
        for _ in range(3):  # len() and every worker ask again: logged once, by consumer 0
            for consumer in range(4):
                plan_ranges(counts, order, consumer, 4, equal=True, names=names)
        plan_ranges(counts, [0, 1, 2, 3], 1, 4, equal=True)  # not consumer 0: not logged
        plan_ranges(counts, [0, 1, 2, 3], 0, 2, equal=True)  # nothing dropped: not logged
        plan_ranges(counts, [0, 1, 2, 3], 0, 4, equal=False)  # evaluation drops nothing
        plan_ranges(counts, [0, 1, 2, 3], 0, 4, equal=True)
    assert [r.getMessage().rpartition(": ")[2] for r in caplog.records] == [
        "b.tfrecord[1:3]",
        "file #3[3:5]",
    ]
    assert "4 readers (ranks x workers) read 6 records each, so 2 of the 26" in caplog.text
