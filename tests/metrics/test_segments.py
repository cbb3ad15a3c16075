"""The 2019 segment metric MAP@K: hand-worked values, id and argument checks, and the
torchmetrics class against the functional versions."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from ddp_helpers import run_on_two_ranks
from vidistill.metrics import SegmentMAPAtK, segment_map_at_k
from vidistill.metrics.segments import (
    segment_ap_per_class,
    segment_average_precision,
    segment_map_at_k_from_scores,
)

# --------------------------------------------------------------------------------------------
# Hand-worked values
# --------------------------------------------------------------------------------------------


def test_average_precision_skips_unrated_entries():
    # Class 3 has N = 3 positives (a:0, c:10, d:0). The list, once x:0 (unrated) is dropped,
    # is a+ b- c+: P = 1/1 at the first positive, 2/3 at the second. AP = (1 + 2/3) / 3 = 5/9.
    ratings = [("a:0", 3, 1.0), ("b:5", 3, 0.0), ("c:10", 3, 1.0), ("d:0", 3, 1.0)]
    submission = {3: ["a:0", "x:0", "b:5", "c:10"]}
    assert segment_map_at_k(submission, ratings) == pytest.approx(5 / 9)


def test_the_cut_comes_before_dropping_unrated_entries():
    # N = 2 (a:0, c:10). With K = 3 the cut keeps x y a, filtering leaves a+: AP = 1/2.
    # Filtering first would leave a+ b- c+ and cut to three: AP = (1 + 2/3) / 2 = 5/6.
    ratings = [("a:0", 0, 1.0), ("b:5", 0, 0.0), ("c:10", 0, 1.0)]
    submission = {0: ["x:0", "y:5", "a:0", "b:5", "c:10"]}
    assert segment_map_at_k(submission, ratings, k=3) == pytest.approx(1 / 2)
    # K = 5 keeps everything: a+ b- c+ gives (1 + 2/3) / 2 = 5/6.
    assert segment_map_at_k(submission, ratings, k=5) == pytest.approx(5 / 6)


def test_positives_beyond_the_cut_count_in_the_denominator():
    # Four positives, K = 2: two kept positives at precision 1 give (1 + 1) / 4 = 0.5, not the
    # 1.0 that a min(N_c, K) denominator would give.
    ratings = [(f"p:{s}", 7, 1.0) for s in (0, 5, 10, 15)]
    submission = {7: ["p:0", "p:5", "p:10", "p:15"]}
    assert segment_map_at_k(submission, ratings, k=2) == pytest.approx(0.5)
    assert segment_map_at_k(submission, ratings) == pytest.approx(1.0)


def test_which_classes_are_evaluated():
    ratings = [
        ("a:0", 1, 1.0),
        ("b:0", 2, 1.0),  # class 2: positives, not submitted -> AP 0
        ("c:0", 9, 0.0),  # class 9: negatives only -> not evaluated
        ("d:0", 4, 1.0),  # class 4: positives, not submitted -> AP 0
    ]
    # Class 5 has no rating at all: ignored, as is class 9.
    submission = {1: ["a:0"], 5: ["z:0"], 9: ["c:0"]}
    assert segment_ap_per_class(submission, ratings) == {1: 1.0, 2: 0.0, 4: 0.0}
    assert segment_map_at_k(submission, ratings) == pytest.approx(1 / 3)
    # The whitelist restricts the evaluated classes; 9 stays out (AP would be 0/0).
    assert segment_ap_per_class(submission, ratings, classes=[1, 9]) == {1: 1.0}
    assert segment_map_at_k(submission, ratings, classes=[2, 1]) == pytest.approx(1 / 2)
    assert segment_map_at_k(submission, ratings, classes=[9]) == 0.0
    with pytest.raises(ValueError, match="classes is empty"):
        segment_map_at_k(submission, ratings, classes=[])


def test_per_class_helper():
    # N = 2 (a:0, c:0). x:0 is unrated; the list leaves a+ b-: AP = 1 / 2.
    ratings = {"a:0": 1.0, "b:5": 0.0, "c:0": 1.0}
    assert segment_average_precision(["x:0", "a:0", "b:5"], ratings) == pytest.approx(0.5)
    assert segment_average_precision(["x:0", "a:0", "b:5"], ratings, k=1) == 0.0
    assert segment_average_precision(["a:0"], {"a:0": 0.0}) == 0.0  # no positive: 0


def test_a_repeated_rating_counts_once_and_a_conflicting_one_is_an_error():
    # N stays 1 despite the repeat, so the single kept positive gives AP 1.
    assert segment_map_at_k({0: ["a:0"]}, [("a:0", 0, 1.0), ("a:0", 0, 1.0)]) == 1.0
    with pytest.raises(ValueError, match="rated both positive and negative for class 0"):
        segment_map_at_k({}, [("a:0", 0, 1.0), ("a:0", 0, 0.0)])
    with pytest.raises(ValueError, match="score must be 1.0 or 0.0"):
        segment_map_at_k({}, [("a:0", 0, 0.5)])
    with pytest.raises(ValueError, match="not a multiple of 5"):
        segment_map_at_k({}, [("a:3", 0, 1.0)])


def test_bytes_ids_and_leading_zeros_name_the_same_segments():
    # b"a:0" decodes to a:0 and b:05 is b:5: both positives are found, AP = 1.
    ratings = [("a:0", 0, 1.0), (b"b:5", 0, 1.0)]
    assert segment_map_at_k({0: [b"a:0", "b:05"]}, ratings) == 1.0
    with pytest.raises(ValueError, match="class 0: duplicate segment id 'b:5'"):
        segment_map_at_k({0: ["b:5", "b:005"]}, ratings)


@pytest.mark.parametrize(
    ("segment_id", "problem"),
    [
        ("abc", "expected 'video_id:start'"),
        (":5", "expected 'video_id:start'"),
        ("a:b:5", "the video id contains"),
        ("abc:x", "start 'x' is not a non-negative integer"),
        ("abc:-5", "start '-5' is not a non-negative integer"),
        ("abc:5.0", "start '5.0' is not a non-negative integer"),
        ("abc:7", "start 7 is not a multiple of 5"),
        ("a,b:5", "the video id contains"),
        ("x:0 y:5", "the video id contains"),  # one id with a space, not two ids
        ("", "expected 'video_id:start'"),
    ],
)
def test_malformed_ids_are_errors(segment_id, problem):
    with pytest.raises(
        ValueError, match=f"class 4: malformed segment id {segment_id!r}: {problem}"
    ):
        segment_map_at_k({4: ["ok:0", segment_id]}, [("ok:0", 4, 1.0)])


def test_duplicate_ids_and_bad_classes_are_errors():
    with pytest.raises(ValueError, match="class 3: duplicate segment id 'a:0'"):
        segment_map_at_k({3: ["a:0", "b:5", "a:0"]}, [])
    with pytest.raises(ValueError, match="class index must be a non-negative integer, got -1"):
        segment_map_at_k({-1: ["a:0"]}, [])
    with pytest.raises(ValueError, match="got one string"):
        segment_map_at_k({3: "a:0"}, [])
    with pytest.raises(ValueError, match="k must be a positive integer"):
        segment_map_at_k({}, [], k=0)


# --------------------------------------------------------------------------------------------
# The torchmetrics class and the score-based functional version
# --------------------------------------------------------------------------------------------

NUM_CLASSES = 6


def make_rated(seed: int, n: int, c: int = NUM_CLASSES) -> tuple[torch.Tensor, ...]:
    """Scores on a coarse grid (many ties), about 40% of the pairs rated, a third of those
    positive; class 0 is never rated (not evaluated)."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, 5, (n, c), generator=g).float() / 4
    weights = (torch.rand(n, c, generator=g) < 0.4).float()
    weights[:, 0] = 0
    labels = (torch.rand(n, c, generator=g) < 0.35).float()
    return scores, labels, weights


def submission_from_scores(scores, labels, weights):
    """The submission and ratings that the tie rule of the tensor versions describes: per class,
    rows by score descending, positive pairs last among equal scores."""
    scores, labels, weights = (x.numpy() for x in (scores, labels, weights))
    n, c = scores.shape
    tie = (weights > 0) & (labels > 0)
    submission = {
        j: [f"v{i}:0" for i in sorted(range(n), key=lambda i: (-scores[i, j], tie[i, j]))]
        for j in range(c)
    }
    ratings = [(f"v{i}:0", j, float(labels[i, j] > 0)) for i, j in np.argwhere(weights)]
    return submission, ratings


@pytest.mark.parametrize("k", [7, 1000])
@pytest.mark.parametrize("classes", [None, [1, 2, 4]])
@pytest.mark.parametrize("seed", [0, 1])
def test_metric_equals_functional_versions(seed, k, classes):
    scores, labels, weights = make_rated(seed, 41)
    expected = segment_map_at_k_from_scores(scores, labels, weights, k, classes)
    submission, ratings = submission_from_scores(scores, labels, weights)
    assert segment_map_at_k(submission, ratings, k, classes) == pytest.approx(expected, rel=1e-12)
    assert 0 < expected < 1

    # Updates in uneven batches, rows shuffled: ties are ordered by rating, not by arrival.
    metric = SegmentMAPAtK(NUM_CLASSES, k=k, classes=classes)
    perm = torch.randperm(len(scores), generator=torch.Generator().manual_seed(seed))
    for rows in torch.split(perm, [1, 15, 9, 16]):
        metric.update(scores[rows], labels[rows], weights[rows])
    assert float(metric.compute()) == expected
    # The cut matters for these data (41 rows, k = 7), so both parametrizations test something.
    if k == 7:
        assert expected != segment_map_at_k_from_scores(scores, labels, weights, 1000, classes)


def test_tied_positives_come_last():
    # One class, three rows with equal scores: a positive, a negative, an unrated one. The positive
    # is ranked third whatever the row order: K = 3 keeps all, the rated ones are - +, AP =
    # (1/2) / 1; K = 2 cuts the positive off, AP = 0. (Row order would give AP 1 at K = 3.)
    scores = torch.full((3, 1), 0.5)
    labels = torch.tensor([[1.0], [0.0], [0.0]])
    weights = torch.tensor([[1.0], [1.0], [0.0]])
    assert segment_map_at_k_from_scores(scores, labels, weights, k=3) == 0.5
    assert segment_map_at_k_from_scores(scores, labels, weights, k=2) == 0.0
    flipped = segment_map_at_k_from_scores(scores.flip(0), labels.flip(0), weights.flip(0), k=3)
    assert flipped == 0.5


def test_metric_stores_only_whitelisted_columns_and_resets():
    scores, labels, weights = make_rated(3, 10)
    metric = SegmentMAPAtK(NUM_CLASSES, k=5, classes=[4, 2])
    with pytest.warns(UserWarning, match="called before the ``update`` method"):
        assert float(metric.compute()) == 0.0
    metric.update(scores, labels, weights)
    assert metric.segment_scores[0].shape == (10, 2)
    assert metric.segment_ratings[0].dtype == torch.uint8
    metric.reset()
    with pytest.warns(UserWarning, match="called before the ``update`` method"):
        assert float(metric.compute()) == 0.0
    # Unrated everywhere: no positives, nothing evaluated.
    metric.update(scores, labels, torch.zeros_like(weights))
    assert float(metric.compute()) == 0.0


def test_metric_rejects_bad_input():
    with pytest.raises(ValueError, match="num_classes must be a positive integer"):
        SegmentMAPAtK(0)
    with pytest.raises(ValueError, match=r"classes \[6\] are outside \[0, 6\)"):
        SegmentMAPAtK(NUM_CLASSES, classes=[1, 6])
    metric = SegmentMAPAtK(NUM_CLASSES)
    with pytest.raises(ValueError, match="expected 6 classes, got 5"):
        metric.update(torch.rand(2, 5), torch.zeros(2, 5), torch.ones(2, 5))
    with pytest.raises(ValueError, match="must have the same shape"):
        metric.update(torch.rand(2, 6), torch.zeros(2, 6), torch.ones(3, 6))
    scores = torch.rand(2, 6)
    scores[1, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        metric.update(scores, torch.zeros(2, 6), torch.ones(2, 6))


def _ddp_worker(rank: int, data_file: str, out_dir: str) -> None:
    scores, labels, weights, split = torch.load(data_file)
    metric = SegmentMAPAtK(NUM_CLASSES, k=9, classes=[1, 3, 4, 5])
    mine = range(0, split) if rank == 0 else range(split, len(scores))
    for start in range(mine.start, mine.stop, 7):  # uneven batches of up to 7
        rows = slice(start, min(start + 7, mine.stop))
        metric.update(scores[rows], labels[rows], weights[rows])
    sharded = float(metric.compute())
    # A rank without any data.
    metric.reset()
    if rank == 0:
        metric.update(scores, labels, weights)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one_empty = float(metric.compute())
    torch.save((sharded, one_empty), Path(out_dir) / f"rank{rank}.pt")


@pytest.mark.timeout(120)
def test_ddp_two_processes_equal_single_process(tmp_path):
    scores, labels, weights = make_rated(5, 47)
    split = 17
    torch.save((scores, labels, weights, split), tmp_path / "data.pt")
    run_on_two_ranks(_ddp_worker, str(tmp_path / "data.pt"), str(tmp_path))
    expected = segment_map_at_k_from_scores(scores, labels, weights, 9, [1, 3, 4, 5])
    for rank in range(2):
        assert torch.load(tmp_path / f"rank{rank}.pt") == (expected, expected)
    # Either half alone scores differently, so the gather did real work.
    half = segment_map_at_k_from_scores(
        scores[:split], labels[:split], weights[:split], 9, [1, 3, 4, 5]
    )
    assert half != expected
