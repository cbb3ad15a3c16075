"""Range planning: every record read by exactly one consumer, or equal shares for DDP training."""

from __future__ import annotations

from vidistill.data.sharding import plan_ranges


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
