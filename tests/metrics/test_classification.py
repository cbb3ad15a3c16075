"""torchmetrics classes: batching, order, DDP and collection behaviour against the functional
metrics (which test_functional.py checks against brute-force references).

The per-video references here (Hit@1, PERR) are again plain loops, so the class metrics are also
tested without going through the functional module.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from ddp_helpers import run_on_two_ranks
from vidistill.metrics import (
    PERR,
    GlobalAveragePrecision,
    HitAtOne,
    MeanAveragePrecision,
    functional,
    video_metrics,
)
from vidistill.metrics.bootstrap import gap_bootstrap_interval

NUM_CLASSES = 13
TOP_K = 5


def make_data(seed: int, n: int, c: int = NUM_CLASSES) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores on a coarse grid (ties at the cut and across videos) and sparse 0/1 labels."""
    g = torch.Generator().manual_seed(seed)
    preds = torch.randint(0, 6, (n, c), generator=g).float() / 5 - 0.2  # includes 0 and < 0
    labels = (torch.rand(n, c, generator=g) < 0.2).long()
    labels[torch.rand(n, generator=g) < 0.15] = 0  # videos without labels
    return preds, labels


def functional_values(preds, labels, top_k: int = TOP_K) -> dict[str, float]:
    return {
        "gap": functional.gap(preds, labels, top_k),
        "map": functional.mean_average_precision(preds, labels, top_k),
        "hit1": functional.hit_at_one(preds, labels),
        "perr": functional.perr(preds, labels),
    }


def assert_matches(result: dict[str, float], expected: dict[str, float]) -> None:
    # GAP, mAP and Hit@1 come from identical pooled state or integer counts: exactly equal.
    # PERR sums float64 per-video terms in batch order, so only the last bits may differ.
    for key in ("gap", "map", "hit1"):
        assert result[key] == expected[key], key
    assert result["perr"] == pytest.approx(expected["perr"], rel=1e-12, abs=1e-15)


def collection_values(metrics) -> dict[str, float]:
    return {key.split("/")[-1]: float(value) for key, value in metrics.compute().items()}


def random_splits(n: int, rng: np.random.Generator) -> list[slice]:
    """Cut range(n) into 1..6 contiguous slices of random (possibly zero) length."""
    cuts = np.sort(rng.integers(0, n + 1, rng.integers(0, 6)))
    bounds = [0, *cuts.tolist(), n]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


# --------------------------------------------------------------------------------------------
# Accumulation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_any_batching_and_order_equals_functional(seed):
    preds, labels = make_data(seed, 71)
    expected = functional_values(preds, labels)
    rng = np.random.default_rng(seed)
    for _ in range(4):
        # Random video order, random batch cuts, random batch order.
        perm = torch.from_numpy(rng.permutation(len(preds)))
        batches = random_splits(len(preds), rng)
        rng.shuffle(batches)
        metrics = video_metrics(NUM_CLASSES, top_k=TOP_K)
        for rows in batches:
            metrics.update(preds[perm][rows], labels[perm][rows])
        assert_matches(collection_values(metrics), expected)


def test_class_metrics_match_loop_references():
    preds, labels = make_data(5, 40)
    hit, perr = HitAtOne(), PERR()
    for rows in (slice(0, 15), slice(15, 40)):
        hit.update(preds[rows], labels[rows])
        perr.update(preds[rows], labels[rows])
    hits, precision = 0, 0.0
    for row, row_labels in zip(preds.tolist(), labels.tolist(), strict=True):
        best = max(range(NUM_CLASSES), key=lambda c: (row[c], -c))  # first maximal index
        hits += row_labels[best] > 0
        m = sum(row_labels)
        top = sorted(range(NUM_CLASSES), key=lambda c: (-row[c], c))[:m]
        precision += sum(row_labels[c] > 0 and row[c] > 0 for c in top) / m if m else 0.0
    assert float(hit.compute()) == hits / 40
    assert float(perr.compute()) == pytest.approx(precision / 40, rel=1e-12)


def test_single_label_first_batch_does_not_merge_hit1_and_perr():
    # A MetricCollection merges metrics whose states look identical after the first update
    # (compute groups). Hit@1 and PERR agree on single-label videos; if their states shared
    # names the collection would stop updating one of them after this batch.
    first_preds = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1]])
    first_labels = torch.tensor([[1, 0, 0], [1, 0, 0]])
    more_preds = torch.tensor([[0.9, 0.8, 0.1], [0.6, 0.5, 0.4]])
    more_labels = torch.tensor([[1, 0, 1], [0, 1, 1]])
    metrics = video_metrics(3, top_k=2, prefix="")
    metrics.update(first_preds, first_labels)
    metrics.update(more_preds, more_labels)
    result = collection_values(metrics)
    # Hit@1: hits on videos 0 and 2 -> 2/4. PERR: 1 + 0 + 1/2 (class 0 of 2, out of m = 2)
    # + 1/2 (class 1 of 2; class 0 at 0.6 is negative) -> 2/4.  Same value, different states:
    # check against the functional on the whole data and that the two differ when they should.
    all_preds = torch.cat([first_preds, more_preds])
    all_labels = torch.cat([first_labels, more_labels])
    assert_matches(result, functional_values(all_preds, all_labels, top_k=2))
    assert result["hit1"] == 0.5 and result["perr"] == 0.5
    metrics.update(torch.tensor([[0.1, 0.9, 0.8]]), torch.tensor([[0, 1, 1]]))  # hit, perr 1
    metrics.update(torch.tensor([[0.9, 0.8, 0.0]]), torch.tensor([[1, 1, 0]]))  # hit, perr 1
    metrics.update(torch.tensor([[0.9, 0.8, 0.7]]), torch.tensor([[0, 1, 1]]))  # miss, perr 1/2
    result = collection_values(metrics)
    assert result["hit1"] == pytest.approx(4 / 7)
    assert result["perr"] == pytest.approx(4.5 / 7)


def test_state_holds_only_top_k_entries():
    preds, labels = make_data(1, 50, c=40)
    gap_metric = GlobalAveragePrecision(top_k=3)
    map_metric = MeanAveragePrecision(num_classes=40, top_k=3)
    for rows in (slice(0, 20), slice(20, 50)):
        gap_metric.update(preds[rows], labels[rows])
        map_metric.update(preds[rows], labels[rows])
    for metric in (gap_metric, map_metric):
        assert sum(t.numel() for t in metric.top_scores) == 50 * 3
        assert sum(t.numel() for t in metric.top_labels) == 50 * 3
    assert sum(t.numel() for t in map_metric.top_classes) == 50 * 3
    assert int(gap_metric.num_positives) == int(labels.sum())
    assert map_metric.positives_per_class.tolist() == labels.sum(0).tolist()
    assert float(gap_metric.compute()) == functional.gap(preds, labels, 3)
    assert float(map_metric.compute()) == functional.mean_average_precision(preds, labels, 3)


def test_reset_and_compute_without_data():
    preds, labels = make_data(2, 20)
    metrics = video_metrics(NUM_CLASSES, top_k=TOP_K, prefix="test/")
    assert sorted(metrics.keys()) == ["test/gap", "test/hit1", "test/map", "test/perr"]
    metrics.update(preds, labels)
    assert collection_values(metrics)["gap"] > 0
    metrics.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchmetrics warns about compute() before update()
        assert collection_values(metrics) == {"gap": 0.0, "map": 0.0, "hit1": 0.0, "perr": 0.0}
    half = preds[:7], labels[:7]
    metrics.update(*half)
    assert_matches(collection_values(metrics), functional_values(*half))


def test_float64_predictions_with_float64_state():
    # Scores that differ only below float32 resolution: the default float32 state merges them
    # into a tie; set_dtype(float64) keeps them apart and matches the functional exactly.
    preds = torch.tensor([[0.5 + 1e-12, 0.1], [0.5, 0.1]], dtype=torch.float64)
    labels = torch.tensor([[1, 0], [0, 0]])
    exact = functional.gap(preds, labels, top_k=1)
    assert exact == 1.0  # the positive ranks first
    default = GlobalAveragePrecision(top_k=1)
    default.update(preds, labels)
    assert float(default.compute()) == 0.5  # documented: rounded to a tie, negative first
    wide = GlobalAveragePrecision(top_k=1).set_dtype(torch.float64)
    wide.update(preds, labels)
    assert float(wide.compute()) == exact


def test_invalid_arguments():
    with pytest.raises(ValueError, match="top_k"):
        GlobalAveragePrecision(top_k=0)
    with pytest.raises(ValueError, match="num_classes"):
        MeanAveragePrecision(num_classes=0)
    metric = MeanAveragePrecision(num_classes=4)
    with pytest.raises(ValueError, match="expected 4 classes"):
        metric.update(torch.rand(2, 5), torch.zeros(2, 5))


# --------------------------------------------------------------------------------------------
# DDP
# --------------------------------------------------------------------------------------------


def _ddp_worker(rank: int, data_file: str, out_dir: str) -> None:
    preds, labels, split = torch.load(data_file)
    mine = slice(0, split) if rank == 0 else slice(split, len(preds))
    metrics = video_metrics(NUM_CLASSES, top_k=TOP_K, prefix="")
    start = mine.start
    while start < mine.stop:  # uneven batches of 7
        rows = slice(start, min(start + 7, mine.stop))
        metrics.update(preds[rows], labels[rows])
        start = rows.stop
    uneven = collection_values(metrics)
    with metrics["gap"].sync_context():
        uneven["gap_interval"] = metrics["gap"].bootstrap_interval(200, seed=3)
    # A rank that receives no data at all (possible with evaluation sharding).
    metrics.reset()
    if rank == 0:
        metrics.update(preds, labels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one_empty = collection_values(metrics)
    torch.save({"uneven": uneven, "one_empty": one_empty}, Path(out_dir) / f"rank{rank}.pt")


@pytest.mark.timeout(120)
def test_ddp_two_processes_equal_single_process(tmp_path):
    preds, labels = make_data(9, 83)
    split = 29  # rank 0 gets 29 videos, rank 1 gets 54
    data_file = tmp_path / "data.pt"
    torch.save((preds, labels, split), data_file)
    run_on_two_ranks(_ddp_worker, str(data_file), str(tmp_path))
    expected = functional_values(preds, labels)
    for rank in range(2):
        result = torch.load(tmp_path / f"rank{rank}.pt")
        interval = result["uneven"].pop("gap_interval")
        assert interval == gap_bootstrap_interval(preds, labels, TOP_K, resamples=200, seed=3)
        assert_matches(result["uneven"], expected)
        assert_matches(result["one_empty"], expected)
    # The halves alone give different numbers, so the sync did real work.
    assert functional_values(preds[:split], labels[:split])["gap"] != expected["gap"]
