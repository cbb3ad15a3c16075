"""The synthetic set's 2019-style segment ratings: which 5-frame segments a rater saw, and what
the rater answered.

Kept apart from the video model (:mod:`vidistill.data.synthetic.generator`) because it models
the *rating process*, not the videos: it reads a rated video's noise-free evidence map and draws
the ratings last from the video's random stream, so its knobs change the ratings and nothing else
(the frames of every video, rated or not, do not depend on them). The one knob that touches rated videos'
frames, ``weak_evidence_share``, is described here too because it imitates what raters accept.

What the real 2019 ratings are like, and the knob that imitates each property
---------------------------------------------------------------------------
The YouTube-8M Segments release (237K human-verified segment ratings on 1000 classes, drawn from
videos of the YT8M validate set, 5.0 rated segments per video, binary scores) rated segments that
a model had proposed for a class the video is labelled with. So:

* Both positives and negatives come from videos labelled with the class. Here: one rated class
  per video (``rated_classes_per_video``), a whitelisted true label; its positives and negatives
  are 5-frame segments of that same video.
* About five segments per rated (video, class), a majority positive: ``positive_segments_per_class``
  3 and ``negative_segments_per_class`` 2 (60% positives; the MOD paper's "dummy prediction",
  where every segment inherits its video's score and so ranks positives and negatives of a video
  alike, scored 0.648 MAP@K, in line with a positive share around 60%).
* Segments are a fixed 5-second grid cut without regard to shots, and the rater answers whether
  the segment *contains* the class: an object seen for one or two seconds makes a positive.
  ``min_positive_frames`` (default 1) is the number of frames in which the class must be visible;
  positives are drawn uniformly from the qualifying segments, so segments that catch only the
  edge of a shot (class visible in 1-4 of the 5 frames) are rated positive as often as the grid
  produces them.
* Negatives are segments where the class is plausible but not shown (the proposing model found
  them likely): ``confusable_negative_share`` of the negatives are drawn, when the video has any,
  from segments showing a *confusable* class (another class of the rated class's prototype
  cluster, e.g. a same-cluster label or distractor), the rest from all segments where the class
  is not visible. No negative shows the rated class in any frame.
* Raters mark an entity even where it is small, far, partly hidden or in the background, where a
  model finds little of it: ``weak_evidence_share`` (default 0.3) of a rated video's label shots
  are shown at an amplitude between :data:`VISIBLE_EVIDENCE` and ``min_amplitude``, below any
  label shot of the frame-level splits (applied in :mod:`vidistill.data.synthetic.generator`
  before the frames are rendered, from a random stream of its own, rated splits only: the
  frame-level splits keep their bytes, so a video-level model meets weak shots only when
  localizing, and its candidate recall drops a little).
* Raters make mistakes: each rating is flipped with probability ``rating_noise``. The release
  publishes no agreement rate; the default (0.05) is a prior for a binary "is it there?"
  question. It caps MAP@K even for a ranker that knows every true answer, so the difficulty was
  set with ``weak_evidence_share`` instead of a higher noise that would make that cap, not the
  models, decide comparisons (trials in ``results/segment_task.md``).

A segment counts a class as visible in a frame when its evidence amplitude is at least
:data:`VISIBLE_EVIDENCE` (label shots are drawn at 0.7-1.3, distractors at about half that;
the faint topic trace in intros and outros stays below it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from vidistill.data.synthetic.config import VISIBLE_EVIDENCE
from vidistill.features import SEGMENT_LENGTH

if TYPE_CHECKING:
    from vidistill.data.synthetic.config import SyntheticConfig
    from vidistill.data.synthetic.world import SyntheticWorld


RATING_STATS = (
    "rated_segments",
    "positive_segments",
    "partly_visible_positives",
    "confusable_negatives",
    "flipped_ratings",
)
"""The per-split counts :func:`rating_stats` gives (summed into ``synthetic.json``)."""


def rate_segments(
    rng: np.random.Generator,
    world: SyntheticWorld,
    cfg: SyntheticConfig,
    evidence: np.ndarray,
    true: np.ndarray,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Ratings of one video's whitelisted true labels, sorted by (start, class).

    Returns ``(segments, details)``: ``segments`` the four 2019 rating arrays as written to the
    file; ``details`` per rating (same order) ``truth`` (float32, the answer before rater noise),
    ``visible_frames`` (int64, frames of the segment in which the class is visible) and
    ``confusable`` (bool, a negative drawn from a segment showing a same-cluster class).
    """
    num_windows = len(evidence) // SEGMENT_LENGTH
    visible = evidence[: num_windows * SEGMENT_LENGTH] >= VISIBLE_EVIDENCE
    counts = visible.reshape(num_windows, SEGMENT_LENGTH, -1).sum(axis=1)  # [windows, C]
    candidates = rng.permutation(true[np.isin(true, world.whitelist)])
    # Classes with a positive segment first: a rater's queue holds segments proposed for classes
    # the proposing model found somewhere in the video.
    has_positive = np.array(
        [(counts[:, c] >= cfg.min_positive_frames).any() for c in candidates], dtype=bool
    )
    ordered = np.concatenate([candidates[has_positive], candidates[~has_positive]])
    rows = [
        row
        for c in ordered[: cfg.rated_classes_per_video]
        for row in _choose_segments(rng, world, cfg, counts, int(c))
    ]
    rows.sort()
    truth = np.array([r[2] for r in rows], dtype=np.float32)
    flipped = rng.random(len(rows)) < cfg.rating_noise
    starts = np.array([r[0] * SEGMENT_LENGTH for r in rows], dtype=np.int64)
    segments = {
        "segment_start_times": starts,
        "segment_end_times": starts + SEGMENT_LENGTH,
        "segment_labels": np.array([r[1] for r in rows], dtype=np.int64),
        "segment_scores": np.where(flipped, 1.0 - truth, truth).astype(np.float32),
    }
    details = {
        "truth": truth,
        "visible_frames": np.array([r[3] for r in rows], dtype=np.int64),
        "confusable": np.array([r[4] for r in rows], dtype=bool),
    }
    return segments, details


_Row = tuple[int, int, float, int, bool]
"""One rating before rater noise: window, class, truth, visible frames, confusable."""


def _choose_segments(
    rng: np.random.Generator,
    world: SyntheticWorld,
    cfg: SyntheticConfig,
    counts: np.ndarray,
    c: int,
) -> list[_Row]:
    """The rated segments of class ``c``: positives among the windows showing it in at least
    ``min_positive_frames`` frames, negatives among those not showing it at all, a share of them
    picked from windows showing a same-cluster class. ``counts`` [windows, C] visible frames."""
    positives = np.flatnonzero(counts[:, c] >= cfg.min_positive_frames)
    negatives = np.flatnonzero(counts[:, c] == 0)
    cluster = world.cluster_members[world.cluster_of[c]]
    lookalikes = cluster[cluster != c]
    shows_lookalike = counts[negatives][:, lookalikes].any(axis=1)
    confusable = negatives[shows_lookalike]

    take_pos = min(len(positives), cfg.positive_segments_per_class)
    take_neg = min(len(negatives), cfg.negative_segments_per_class)
    take_conf = min(int(rng.binomial(take_neg, cfg.confusable_negative_share)), len(confusable))
    chosen_conf = rng.choice(confusable, take_conf, replace=False)
    others = np.setdiff1d(negatives, chosen_conf)
    chosen_other = rng.choice(others, take_neg - take_conf, replace=False)
    rows: list[_Row] = []
    for w in rng.choice(positives, take_pos, replace=False):
        rows.append((int(w), c, 1.0, int(counts[w, c]), False))
    for w in chosen_conf:
        rows.append((int(w), c, 0.0, 0, True))
    for w in chosen_other:
        rows.append((int(w), c, 0.0, 0, bool(np.isin(w, confusable))))
    return rows


def rating_stats(segments: dict[str, np.ndarray], details: dict[str, np.ndarray]) -> dict[str, int]:
    """Counts for ``synthetic.json``: how many ratings of each kind a video holds."""
    truth, scores = details["truth"], segments["segment_scores"]
    positive = truth == 1.0
    return {
        "rated_segments": len(scores),
        "positive_segments": int(scores.sum()),
        "partly_visible_positives": int(
            (positive & (details["visible_frames"] < SEGMENT_LENGTH)).sum()
        ),
        "confusable_negatives": int((~positive & details["confusable"]).sum()),
        "flipped_ratings": int((scores != truth).sum()),
    }
