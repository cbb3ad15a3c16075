"""Functional YT8M metrics against brute-force references and hand-worked examples.

The references below are written from the official definitions (google/youtube-8m
``eval_util.py``, summarised in :mod:`vidistill.metrics.functional`) with plain Python loops,
using the documented tie convention (lower class index first inside a video; negatives before
positives among equal scores in a ranking). They share no code with the library.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidistill.metrics import functional as F

# --------------------------------------------------------------------------------------------
# Brute-force references
# --------------------------------------------------------------------------------------------


def ref_top_k(row: list[float], k: int) -> list[int]:
    """Class indices of the k best scores, ties to the lower index."""
    return sorted(range(len(row)), key=lambda c: (-row[c], c))[: min(k, len(row))]


def ref_ap(pairs: list[tuple[float, bool]], num_positives: int) -> float:
    """Non-interpolated AP of (score, is_positive) pairs over a given number of positives."""
    if num_positives == 0:
        return 0.0
    # False sorts before True: among equal scores negatives are ranked first.
    ranked = sorted(pairs, key=lambda pair: (-pair[0], pair[1]))
    hits, total = 0, 0.0
    for rank, (_, positive) in enumerate(ranked, start=1):
        if positive:
            hits += 1
            total += hits / rank
    return total / num_positives


def ref_gap(preds: np.ndarray, labels: np.ndarray, k: int) -> float:
    pairs = []
    num_positives = 0
    for row, row_labels in zip(preds.tolist(), labels.tolist(), strict=True):
        num_positives += sum(1 for v in row_labels if v > 0)
        for c in ref_top_k(row, k):
            pairs.append((row[c], row_labels[c] > 0))
    return ref_ap(pairs, num_positives)


def ref_map(preds: np.ndarray, labels: np.ndarray, k: int) -> float:
    num_classes = preds.shape[1]
    kept: list[list[tuple[float, bool]]] = [[] for _ in range(num_classes)]
    positives = [0] * num_classes
    for row, row_labels in zip(preds.tolist(), labels.tolist(), strict=True):
        for c in range(num_classes):
            positives[c] += row_labels[c] > 0
        for c in ref_top_k(row, k):
            kept[c].append((row[c], row_labels[c] > 0))
    aps = [ref_ap(kept[c], positives[c]) for c in range(num_classes) if positives[c] > 0]
    return sum(aps) / len(aps) if aps else 0.0


def ref_hit_at_one(preds: np.ndarray, labels: np.ndarray) -> float:
    hits = 0
    for row, row_labels in zip(preds.tolist(), labels.tolist(), strict=True):
        best = 0
        for c in range(1, len(row)):
            if row[c] > row[best]:  # strict: the first maximal index wins
                best = c
        hits += row_labels[best] > 0
    return hits / len(preds)


def ref_perr(preds: np.ndarray, labels: np.ndarray) -> float:
    total = 0.0
    for row, row_labels in zip(preds.tolist(), labels.tolist(), strict=True):
        m = sum(1 for v in row_labels if v > 0)
        if m:
            top = ref_top_k(row, m)
            total += sum(1 for c in top if row_labels[c] > 0 and row[c] > 0) / m
    return total / len(preds)


def check_all(preds: np.ndarray, labels: np.ndarray, k: int) -> None:
    """Every functional metric equals its reference on (preds, labels)."""
    # GAP, mAP and Hit@1 sum the same terms in the same order as the references, bar float
    # rounding in the library's vectorised sums: 1e-12 relative is far below any real error.
    assert F.gap(preds, labels, k) == pytest.approx(ref_gap(preds, labels, k), rel=1e-12, abs=0)
    assert F.mean_average_precision(preds, labels, k) == pytest.approx(
        ref_map(preds, labels, k), rel=1e-12, abs=0
    )
    assert F.hit_at_one(preds, labels) == ref_hit_at_one(preds, labels)
    assert F.perr(preds, labels) == pytest.approx(ref_perr(preds, labels), rel=1e-12, abs=0)


# --------------------------------------------------------------------------------------------
# Data generators
# --------------------------------------------------------------------------------------------


def random_case(
    seed: int, n: int, c: int, kind: str, density: float = 0.15
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if kind == "continuous":
        preds = rng.random((n, c), dtype=np.float32)
    elif kind == "quantised":  # few distinct levels: ties at the cut, in the pool, everywhere
        preds = (rng.integers(0, 4, (n, c)) / 4).astype(np.float32)
    elif kind == "signed":  # negative and zero scores matter for PERR's "> 0"
        preds = rng.integers(-3, 4, (n, c)).astype(np.float32) / 3
    else:
        raise ValueError(kind)
    labels = (rng.random((n, c)) < density).astype(np.int64)
    labels[rng.random(n) < 0.2] = 0  # some videos without labels
    return preds, labels


# --------------------------------------------------------------------------------------------
# Hand-worked examples
# --------------------------------------------------------------------------------------------


def test_gap_hand_example():
    preds = np.array([[0.9, 0.1, 0.5], [0.2, 0.8, 0.3]], dtype=np.float32)
    labels = np.array([[1, 0, 1], [0, 0, 1]])
    # top 2 per video: v0 -> (0.9, +), (0.5, +); v1 -> (0.8, -), (0.3, +).
    # Pooled ranking: 0.9+ 0.8- 0.5+ 0.3+  -> precisions at positives 1/1, 2/3, 3/4.
    # 3 positives in total: GAP = (1 + 2/3 + 3/4) / 3 = (29/12) / 3 = 29/36.
    assert F.gap(preds, labels, top_k=2) == pytest.approx(29 / 36, rel=1e-12)
    # A fourth positive at v1 class 0 (score 0.2, not in v1's top 2) adds nothing to the
    # numerator but counts in the denominator: 29/12 / 4 = 29/48.
    labels[1, 0] = 1
    assert F.gap(preds, labels, top_k=2) == pytest.approx(29 / 48, rel=1e-12)
    # With top_k = 3 every entry is kept; ranking 0.9+ 0.8- 0.5+ 0.3+ 0.2+ 0.1-:
    # (1/1 + 2/3 + 3/4 + 4/5) / 4 = (60 + 40 + 45 + 48) / 60 / 4 = 193/240.
    assert F.gap(preds, labels, top_k=3) == pytest.approx(193 / 240, rel=1e-12)


def test_map_hit_perr_hand_example():
    preds = np.array([[0.9, 0.8, 0.1], [0.7, 0.6, 0.2], [0.5, 0.95, 0.3]], dtype=np.float32)
    labels = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0]])
    # top 1: v0 -> class 0 (0.9, +); v1 -> class 0 (0.7, -); v2 -> class 1 (0.95, -).
    # class 0: kept 0.9+ 0.7-, 2 positives in labels -> AP = (1/1) / 2 = 1/2.
    # class 1: kept 0.95-, 1 positive (v1, never kept) -> AP = 0, still counted.
    # class 2: no positives -> skipped. mAP = (1/2 + 0) / 2 = 1/4 (it would be 1/6 over 3).
    assert F.mean_average_precision(preds, labels, top_k=1) == pytest.approx(0.25, rel=1e-12)
    # GAP: pool 0.95- 0.9+ 0.7-, one positive at rank 2 -> 1/2, over 3 positives = 1/6.
    assert F.gap(preds, labels, top_k=1) == pytest.approx(1 / 6, rel=1e-12)
    # Hit@1: v0 hits, v1 (class 0) and v2 (class 1) miss -> 1/3.
    assert F.hit_at_one(preds, labels) == pytest.approx(1 / 3)
    # PERR: each video has m = 1, so it equals Hit@1 here (all top scores are > 0).
    assert F.perr(preds, labels) == pytest.approx(1 / 3)


def test_perr_hand_example():
    preds = np.array([[0.9, 0.0, 0.8, 0.1], [0.0, 0.0, -1.0, -2.0], [0.3, 0.2, 0.1, 0.0]])
    labels = np.array([[1, 1, 0, 1], [1, 0, 0, 0], [0, 0, 0, 0]])
    # v0: m = 3, best three are class 0 (0.9, +), class 2 (0.8, -), class 3 (0.1, +) -> 2/3.
    # v1: m = 1, classes 0 and 1 tie at 0.0; class 0 wins (lower index) and is positive, but a
    #     score of 0 is not > 0 -> 0.
    # v2: no labels -> 0. PERR = (2/3 + 0 + 0) / 3 = 2/9.
    assert F.perr(preds, labels) == pytest.approx(2 / 9, rel=1e-12)
    # Hit@1 has no score condition: v0 hits, v1 hits (class 0 by the lower-index rule), v2
    # misses (no labels) -> 2/3.
    assert F.hit_at_one(preds, labels) == pytest.approx(2 / 3)
    # Flip v1's labels to class 1: the tie at 0.0 still goes to class 0, now a miss.
    labels[1] = [0, 1, 0, 0]
    assert F.hit_at_one(preds, labels) == pytest.approx(1 / 3)


def test_pooled_tie_puts_negatives_first():
    # Two videos, top_k = 1, both keep class 0 at 0.5: one positive, one negative.
    preds = np.array([[0.5, 0.1], [0.5, 0.1]], dtype=np.float32)
    labels = np.array([[1, 0], [0, 0]])
    # The negative is ranked first: the positive sits at rank 2 -> AP = (1/2) / 1.
    assert F.gap(preds, labels, top_k=1) == 0.5
    assert F.gap(preds[::-1], labels[::-1], top_k=1) == 0.5  # and not by video order
    # The same rule inside class 0's ranking for mAP (class 1 has no positives).
    assert F.mean_average_precision(preds, labels, top_k=1) == 0.5
    assert F.mean_average_precision(preds[::-1], labels[::-1], top_k=1) == 0.5


def test_tie_at_cut_keeps_lower_class_index():
    preds = np.array([[0.3, 0.7, 0.7, 0.7]], dtype=np.float32)
    # Three classes tie at 0.7 for two places: classes 1 and 2 are kept, class 3 is not.
    scores, labels, classes = F.top_k_per_video(preds, np.array([[0, 0, 1, 1]]), 2)
    assert classes.tolist() == [[1, 2]]
    assert labels.tolist() == [[False, True]]
    assert scores[0].tolist() == pytest.approx([0.7, 0.7])
    # The positive at class 3 is left out: GAP has a positive but nothing kept -> 0.
    assert F.gap(preds, np.array([[0, 0, 0, 1]]), top_k=2) == 0.0
    # The positive at class 2 is kept but ranks after the tied negative -> (1/2) / 1.
    assert F.gap(preds, np.array([[0, 0, 1, 0]]), top_k=2) == 0.5


# --------------------------------------------------------------------------------------------
# Random and adversarial cases against the references
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["continuous", "quantised", "signed"])
@pytest.mark.parametrize(("n", "c", "k"), [(1, 7, 3), (17, 5, 2), (40, 23, 5), (25, 12, 20)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_against_reference(seed, n, c, k, kind):
    preds, labels = random_case(seed, n, c, kind)
    check_all(preds, labels, k)


def test_random_against_reference_with_small_chunks(monkeypatch):
    # Tiny chunks force many chunk boundaries and chunks where only some rows have a tie at the
    # cut, which the one-chunk tests above cannot reach.
    monkeypatch.setattr(F, "_CHUNK_ELEMENTS", 50)
    for seed in range(4):
        for kind in ("continuous", "quantised", "signed"):
            preds, labels = random_case(seed, 37, 11, kind, density=0.3)
            check_all(preds, labels, 4)


ADVERSARIAL = {
    "all_equal_scores": (np.full((6, 8), 0.25, np.float32), np.eye(6, 8, 3, dtype=np.int64)),
    "all_zero_scores": (np.zeros((5, 6), np.float32), np.eye(5, 6, dtype=np.int64)),
    "empty_label_rows": (
        np.random.default_rng(3).random((6, 9), dtype=np.float32),
        np.array([[0] * 9, [1] + [0] * 8, [0] * 9, [0] * 8 + [1], [0] * 9, [1] * 9]),
    ),
    "no_positives_at_all": (
        np.random.default_rng(4).random((4, 5), dtype=np.float32),
        np.zeros((4, 5), np.int64),
    ),
    # Every positive is on each video's lowest-scoring classes, never in a top 3.
    "labels_outside_top_k": (
        np.tile(np.linspace(1.0, 0.0, 10, dtype=np.float32), (4, 1)),
        np.tile(np.array([0] * 7 + [1, 1, 1]), (4, 1)),
    ),
    # Class 0 has positives but always scores lowest; the others are kept but mixed.
    "class_with_positives_never_kept": (
        np.array([[0.0, 0.9, 0.8, 0.7], [0.1, 0.6, 0.9, 0.2], [0.0, 0.3, 0.2, 0.4]], np.float32),
        np.array([[1, 1, 0, 0], [1, 0, 1, 0], [1, 0, 0, 0]]),
    ),
    "single_video": (np.array([[0.2, 0.9, 0.9, 0.1]], np.float32), np.array([[0, 0, 1, 1]])),
    "signed_zero_ties": (
        np.array([[0.0, -0.0, 0.0, -0.0], [-0.0, 0.0, -0.0, 0.0]], np.float32),
        np.array([[0, 1, 0, 1], [1, 0, 0, 1]]),
    ),
    "infinities": (
        np.array([[np.inf, 1.0, -np.inf, np.inf], [-np.inf, -np.inf, 0.5, -np.inf]], np.float32),
        np.array([[0, 1, 0, 1], [1, 0, 0, 1]]),
    ),
    "single_class": (np.array([[0.3], [0.9], [0.3]], np.float32), np.array([[1], [0], [1]])),
}


@pytest.mark.parametrize("k", [1, 3, 50])  # 50 > C everywhere: top_k is clipped to C
@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_adversarial_against_reference(name, k):
    preds, labels = ADVERSARIAL[name]
    check_all(preds, labels, k)


def test_adversarial_values_are_what_the_definitions_say():
    # Guard against a reference and library that agree on a wrong answer in the edge cases.
    preds, labels = ADVERSARIAL["no_positives_at_all"]
    assert F.gap(preds, labels) == 0.0
    assert F.mean_average_precision(preds, labels) == 0.0
    assert F.hit_at_one(preds, labels) == 0.0
    assert F.perr(preds, labels) == 0.0
    preds, labels = ADVERSARIAL["labels_outside_top_k"]
    assert F.gap(preds, labels, top_k=3) == 0.0
    assert F.mean_average_precision(preds, labels, top_k=3) == 0.0
    assert F.gap(preds, labels, top_k=10) > 0.0  # keeping everything finds them
    # All scores 0: PERR needs a score > 0, so it is 0 although the tie rule picks positives.
    preds, labels = ADVERSARIAL["all_zero_scores"]
    assert F.perr(preds, labels) == 0.0
    # Hit@1 picks class 0 on ties; only video 0 has its positive there.
    assert F.hit_at_one(preds, labels) == pytest.approx(1 / 5)


def test_top_k_per_video_matches_reference_order():
    for seed in range(3):
        preds, labels = random_case(seed, 30, 9, "quantised", density=0.4)
        scores, kept_labels, classes = F.top_k_per_video(preds, labels, 4)
        assert scores.shape == kept_labels.shape == classes.shape == (30, 4)
        assert kept_labels.dtype == torch.bool and classes.dtype == torch.int64
        for i, row in enumerate(preds.tolist()):
            expected = ref_top_k(row, 4)  # already ordered score desc, then index asc
            assert classes[i].tolist() == expected
            assert scores[i].tolist() == [row[c] for c in expected]
            assert kept_labels[i].tolist() == [bool(labels[i, c]) for c in expected]
    # top_k larger than C returns all C classes.
    scores, _, classes = F.top_k_per_video(np.array([[0.1, 0.3]]), np.array([[1, 0]]), 20)
    assert classes.tolist() == [[1, 0]]


# --------------------------------------------------------------------------------------------
# Input types and invariances
# --------------------------------------------------------------------------------------------


def test_numpy_and_torch_inputs_agree():
    preds, labels = random_case(7, 33, 14, "quantised", density=0.3)
    expected = {
        "gap": F.gap(preds, labels, 5),
        "map": F.mean_average_precision(preds, labels, 5),
        "hit": F.hit_at_one(preds, labels),
        "perr": F.perr(preds, labels),
    }
    variants = [
        (torch.from_numpy(preds), torch.from_numpy(labels)),
        (preds.astype(np.float64), labels.astype(bool)),
        (torch.from_numpy(preds).double(), torch.from_numpy(labels).float()),
        (preds, labels.astype(np.uint8)),
        (torch.from_numpy(preds).half(), torch.from_numpy(labels).bool()),  # 0, .25, .5, .75 exact
        (preds.tolist(), labels.tolist()),  # plain nested lists go through np.asarray
    ]
    for p, y in variants:
        assert F.gap(p, y, 5) == expected["gap"]
        assert F.mean_average_precision(p, y, 5) == expected["map"]
        assert F.hit_at_one(p, y) == expected["hit"]
        assert F.perr(p, y) == expected["perr"]
        assert isinstance(F.gap(p, y, 5), float)
    # Non-contiguous numpy views (negative strides) are accepted and mean the same data.
    flipped = preds[:, ::-1]
    assert F.gap(flipped, labels[:, ::-1], 5) == pytest.approx(
        ref_gap(np.ascontiguousarray(flipped), labels[:, ::-1], 5), rel=1e-12
    )


def test_results_do_not_depend_on_video_order():
    # Heavy ties: the official shuffle would move these numbers; the convention must not.
    preds, labels = random_case(11, 60, 10, "quantised", density=0.3)
    base = (F.gap(preds, labels, 3), F.mean_average_precision(preds, labels, 3))
    rng = np.random.default_rng(0)
    for _ in range(5):
        perm = rng.permutation(len(preds))
        assert (
            F.gap(preds[perm], labels[perm], 3),
            F.mean_average_precision(preds[perm], labels[perm], 3),
        ) == base
        assert F.perr(preds[perm], labels[perm]) == pytest.approx(F.perr(preds, labels))
        assert F.hit_at_one(preds[perm], labels[perm]) == F.hit_at_one(preds, labels)


def test_empty_batch_gives_zero():
    preds, labels = np.zeros((0, 5), np.float32), np.zeros((0, 5), np.int64)
    assert F.gap(preds, labels) == 0.0
    assert F.mean_average_precision(preds, labels) == 0.0
    assert F.hit_at_one(preds, labels) == 0.0
    assert F.perr(preds, labels) == 0.0
    assert F.top_k_per_video(preds, labels, 3)[2].shape == (0, 3)


@pytest.mark.parametrize(
    "fn", [F.gap, F.mean_average_precision, F.hit_at_one, F.perr], ids=lambda f: f.__name__
)
def test_invalid_inputs_raise(fn):
    good = np.random.default_rng(0).random((3, 4), dtype=np.float32)
    labels = np.zeros((3, 4))
    labels[0, 1] = 1
    with pytest.raises(ValueError, match="shape"):
        fn(good, labels[:, :3])
    with pytest.raises(ValueError, match="2-D"):
        fn(good[0], labels[0])
    bad = good.copy()
    bad[2, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fn(bad, labels)


def test_invalid_top_k_raises():
    preds, labels = random_case(0, 3, 4, "continuous")
    for top_k in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="top_k"):
            F.gap(preds, labels, top_k)
