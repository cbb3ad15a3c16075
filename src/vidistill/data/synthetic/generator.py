"""One synthetic video: length, labels, timeline of intro, shots and outro, rendered features and
their YT8M quantization (the generative model is described in :mod:`vidistill.data.synthetic`).

Every video draws from its own random stream, ``np.random.default_rng([seed, split, index])``,
in a fixed order (length, labels, label noise, timeline, features, then ratings), so any video can
be regenerated alone and a change of order would change every byte written.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from vidistill.data.synthetic.config import RATED_SPLITS, SPLITS, SyntheticConfig
from vidistill.data.synthetic.ratings import VISIBLE_EVIDENCE, rate_segments
from vidistill.data.synthetic.world import STREAM, SyntheticWorld, build_world
from vidistill.features import FEATURE_SIZE, RGB_SIZE

_ID_PREFIX = {
    "train": "T",
    "validate": "V",
    "test": "E",
    "segment_validate": "S",
    "segment_test": "U",
    "segment_tune": "N",
}
_WEAK_STREAM = 1
"""Sub-stream of a rated video's seed for its weak shots (``[seed, split, index, 1]``)."""
_ID_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_INTRO, _BODY, _OUTRO = 0, 1, 2

# 256 equiprobable quantiles of the standard normal, rescaled to unit variance: indexed by random
# bytes they give discretized Gaussian noise at a fraction of the cost of Gaussian sampling.
_GAUSS_LEVELS = np.array([NormalDist().inv_cdf((i + 0.5) / 256) for i in range(256)])
_GAUSS_LEVELS = (_GAUSS_LEVELS / np.sqrt(np.mean(_GAUSS_LEVELS**2))).astype(np.float32)


@dataclass
class SyntheticVideo:
    """One generated video with its noise-free truth. ``n`` frames, ``C`` classes.

    ``features`` float32 [n, 1152] (rgb then audio, before quantization: what the file holds is
    ``quantize(features)``); ``labels`` the labels written to the files, ``true_labels`` and
    ``noisy_labels`` (sorted int64) both versions; ``evidence`` float32 [n, C] the amplitude of
    each class in each frame relative to its prototype (0 = absent; labels in their shots,
    distractors, the faint topic trace in intros/outros); ``region`` int8 [n] (0 intro, 1 body,
    2 outro); ``shot`` int32 [n] the unit (intro, shot or outro) of each frame; ``distractors``
    the video's distractor classes; ``segments`` the rating arrays as written and
    ``rating_details`` their noise-free truth, visible frames and confusable flags (segment-rated
    splits only; see :func:`vidistill.data.synthetic.ratings.rate_segments`).
    """

    id: str
    split: str
    index: int
    features: np.ndarray
    labels: np.ndarray
    true_labels: np.ndarray
    noisy_labels: np.ndarray
    evidence: np.ndarray
    region: np.ndarray
    shot: np.ndarray
    distractors: np.ndarray
    segments: dict[str, np.ndarray] | None = None
    rating_details: dict[str, np.ndarray] | None = None

    @property
    def num_frames(self) -> int:
        return len(self.features)

    def quantized(self) -> tuple[np.ndarray, np.ndarray]:
        """(rgb uint8 [n, 1024], audio uint8 [n, 128]) exactly as written to the files."""
        q = quantize(self.features)
        return q[:, :RGB_SIZE], q[:, RGB_SIZE:]

    def visible(self) -> np.ndarray:
        """bool [n, C]: where a class is clearly visible (evidence >= VISIBLE_EVIDENCE)."""
        return self.evidence >= VISIBLE_EVIDENCE


@dataclass
class _Timeline:
    """Units (intro, body shots, outro) of a video and the classes they show.

    ``lengths``/``region``/``template``/``background`` are per unit [U]; ``classes`` [K] are the
    true labels (topic first) then the distractors; ``amplitude`` [U, K] relative amplitudes.
    """

    lengths: np.ndarray
    region: np.ndarray
    template: np.ndarray
    background: np.ndarray
    background_scale: np.ndarray
    classes: np.ndarray
    num_labels: int
    amplitude: np.ndarray


def video_id(split: str, index: int) -> str:
    """A short unique id, YT8M-like: a split letter then base-62 digits (``T00a``)."""
    digits = ""
    while True:
        index, r = divmod(index, len(_ID_ALPHABET))
        digits = _ID_ALPHABET[r] + digits
        if index == 0:
            break
    return _ID_PREFIX[split] + digits.rjust(3, "0")


def sample_video(config: SyntheticConfig, split: str, index: int) -> SyntheticVideo:
    """Generate video ``index`` of ``split`` (one of :data:`SPLITS`), exactly as written."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    world = build_world(config)
    rng = np.random.default_rng([config.seed, STREAM[split], index])
    rated = split in RATED_SPLITS
    n = _sample_length(rng, config)
    true = _sample_labels(rng, world, config, whitelisted_topic=rated)
    noisy = _corrupt_labels(rng, world, config, true)
    timeline = _sample_timeline(rng, world, config, n, true)
    if rated:
        _weaken_label_shots(config, split, index, timeline)
    features = _render(rng, world, config, timeline)
    evidence = _evidence_map(timeline, config.num_classes)
    # Ratings are drawn last from the video's stream: their knobs never change any frame.
    segments, details = rate_segments(rng, world, config, evidence, true) if rated else (None, None)
    noisy_written = split == "train" or config.noisy_eval_labels
    units = np.arange(len(timeline.lengths), dtype=np.int32)
    return SyntheticVideo(
        id=video_id(split, index),
        split=split,
        index=index,
        features=features,
        labels=np.sort(noisy) if noisy_written else np.sort(true),
        true_labels=np.sort(true),
        noisy_labels=np.sort(noisy),
        evidence=evidence,
        region=np.repeat(timeline.region, timeline.lengths).astype(np.int8),
        shot=np.repeat(units, timeline.lengths),
        distractors=timeline.classes[timeline.num_labels :].copy(),
        segments=segments,
        rating_details=details,
    )


def _sample_length(rng: np.random.Generator, cfg: SyntheticConfig) -> int:
    n = round(cfg.mean_frames + cfg.std_frames * rng.standard_normal())
    return int(min(max(n, cfg.min_frames), cfg.max_frames))


def _weighted_choice(rng: np.random.Generator, candidates: np.ndarray, weights: np.ndarray) -> int:
    cumulative = np.cumsum(weights)
    position = np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right")
    return int(candidates[min(position, len(candidates) - 1)])


def _sample_labels(
    rng: np.random.Generator, world: SyntheticWorld, cfg: SyntheticConfig, whitelisted_topic: bool
) -> np.ndarray:
    """True labels, int64 [L], topic first: 1 + Binomial(max_labels - 1, label_count_p) classes."""
    count = 1 + int(rng.binomial(cfg.max_labels - 1, cfg.label_count_p))
    topic_pool = world.whitelist if whitelisted_topic else np.arange(cfg.num_classes)
    labels = [_weighted_choice(rng, topic_pool, world.prior[topic_pool])]
    everything = np.arange(cfg.num_classes)
    while len(labels) < count:
        same_cluster = rng.random() < cfg.same_cluster_label_prob
        pool = world.cluster_members[world.cluster_of[labels[0]]] if same_cluster else everything
        pool = pool[~np.isin(pool, labels)]
        if len(pool) == 0:
            pool = everything[~np.isin(everything, labels)]
        labels.append(_weighted_choice(rng, pool, world.prior[pool]))
    return np.asarray(labels, dtype=np.int64)


def _corrupt_labels(
    rng: np.random.Generator, world: SyntheticWorld, cfg: SyntheticConfig, true: np.ndarray
) -> np.ndarray:
    """Machine-made labels: drop each true label with probability ``label_drop_rate``; add a
    spurious label from the prior with probability ``spurious_label_rate``. Unsorted int64."""
    kept = true[rng.random(len(true)) >= cfg.label_drop_rate]
    if rng.random() < cfg.spurious_label_rate:
        others = np.setdiff1d(np.arange(cfg.num_classes), true)
        kept = np.append(kept, _weighted_choice(rng, others, world.prior[others]))
    return kept.astype(np.int64)


def _sample_timeline(
    rng: np.random.Generator,
    world: SyntheticWorld,
    cfg: SyntheticConfig,
    n: int,
    labels: np.ndarray,
) -> _Timeline:
    """Intro, body shots and outro, and which classes each unit shows at which amplitude.

    The helpers draw from ``rng`` in this order; the order is part of the format."""
    intro, outro = _sample_intro_outro(rng, cfg, n)
    shots = _cut_body_into_shots(rng, cfg, n - intro - outro)
    present, label_amp = _sample_label_amplitudes(rng, cfg, len(shots), len(labels))
    distractors, distractor_amp = _sample_distractors(rng, world, cfg, labels, present)
    return _assemble_units(
        rng, cfg, intro, outro, shots, np.hstack([label_amp, distractor_amp]), labels, distractors
    )


def _sample_intro_outro(rng: np.random.Generator, cfg: SyntheticConfig, n: int) -> tuple[int, int]:
    """Frames of the intro and of the outro (0: none; videos under 10 frames have neither)."""
    fractions = rng.uniform(cfg.min_intro_outro_fraction, cfg.max_intro_outro_fraction, size=2)
    has_intro, has_outro = rng.random(2) < (cfg.intro_prob, cfg.outro_prob)
    intro = max(1, round(fractions[0] * n)) if has_intro and n >= 10 else 0
    outro = max(1, round(fractions[1] * n)) if has_outro and n >= 10 else 0
    return intro, outro


def _cut_body_into_shots(rng: np.random.Generator, cfg: SyntheticConfig, body: int) -> np.ndarray:
    """Shot lengths covering ``body`` frames: enough lengths are drawn, the last shot is cut."""
    draws = rng.integers(
        cfg.min_shot_frames, cfg.max_shot_frames + 1, size=body // cfg.min_shot_frames + 1
    )
    ends = np.cumsum(draws)
    num_shots = int(np.searchsorted(ends, body)) + 1
    shots = draws[:num_shots].copy()
    shots[-1] = body - (ends[num_shots - 2] if num_shots > 1 else 0)
    return shots


def _sample_label_amplitudes(
    rng: np.random.Generator, cfg: SyntheticConfig, num_shots: int, num_labels: int
) -> tuple[np.ndarray, np.ndarray]:
    """Where each label shows (bool [shots, labels]: in a share of the shots, at least one) and
    its amplitude there (float64 [shots, labels], drawn per shot, 0 where absent)."""
    presence = rng.uniform(cfg.min_label_presence, cfg.max_label_presence, size=num_labels)
    present = rng.random((num_shots, num_labels)) < presence
    fallback = rng.integers(num_shots, size=num_labels)
    for j in np.flatnonzero(~present.any(axis=0)):
        present[fallback[j], j] = True
    amplitude = rng.uniform(cfg.min_amplitude, cfg.max_amplitude, size=(num_shots, num_labels))
    return present, amplitude * present


def _sample_distractors(
    rng: np.random.Generator,
    world: SyntheticWorld,
    cfg: SyntheticConfig,
    labels: np.ndarray,
    present: np.ndarray,
) -> tuple[list[int], np.ndarray]:
    """The video's distractor classes, and their amplitudes [shots, distractors]: a shot showing
    no label (``present`` [shots, labels]) may show one distractor."""
    num_shots = len(present)
    num_distractors = int(rng.integers(1, cfg.max_distractor_classes + 1))
    distractors: list[int] = []
    for _ in range(num_distractors):
        pool = np.setdiff1d(np.arange(cfg.num_classes), np.concatenate([labels, distractors]))
        distractors.append(_weighted_choice(rng, pool, world.prior[pool]))
    shows = ~present.any(axis=1) & (rng.random(num_shots) < cfg.distractor_prob)
    which = rng.integers(num_distractors, size=num_shots)
    strength = cfg.distractor_amplitude * rng.uniform(
        cfg.min_amplitude, cfg.max_amplitude, size=num_shots
    )
    amplitude = np.zeros((num_shots, num_distractors))
    amplitude[np.flatnonzero(shows), which[shows]] = strength[shows]
    return distractors, amplitude


def _assemble_units(
    rng: np.random.Generator,
    cfg: SyntheticConfig,
    intro: int,
    outro: int,
    shots: np.ndarray,
    body_amp: np.ndarray,
    labels: np.ndarray,
    distractors: list[int],
) -> _Timeline:
    """Units in time order, [intro] shots [outro], with their templates and background scenes;
    the intro and outro carry a faint trace of the topic (the first label)."""
    num_shots = len(shots)
    trace = np.zeros((1, body_amp.shape[1]))
    trace[0, 0] = cfg.intro_outro_evidence * rng.uniform(cfg.min_amplitude, cfg.max_amplitude)
    blocks_len, blocks_region, blocks_amp = [shots], [np.full(num_shots, _BODY)], [body_amp]
    if intro:
        blocks_len.insert(0, [intro])
        blocks_region.insert(0, [_INTRO])
        blocks_amp.insert(0, trace)
    if outro:
        blocks_len.append([outro])
        blocks_region.append([_OUTRO])
        blocks_amp.append(trace)
    region = np.concatenate(blocks_region).astype(np.int8)
    units = len(region)
    template = np.where(
        region == _INTRO,
        rng.integers(cfg.num_intro_templates, size=units),
        rng.integers(cfg.num_outro_templates, size=units),
    )
    return _Timeline(
        lengths=np.concatenate(blocks_len).astype(np.int64),
        region=region,
        template=template,
        background=rng.integers(cfg.num_background_templates, size=units),
        background_scale=rng.uniform(0.5, 1.5, size=units),
        classes=np.concatenate([labels, np.asarray(distractors, dtype=np.int64)]),
        num_labels=len(labels),
        amplitude=np.vstack(blocks_amp),
    )


def _weaken_label_shots(cfg: SyntheticConfig, split: str, index: int, timeline: _Timeline) -> None:
    """Show a share ``weak_evidence_share`` of the label shots of a rated video weakly, in place.

    Drawn from a stream of its own, so that the rest of the video (and with a share of 0 the
    whole video) is what it would be without the knob."""
    if cfg.weak_evidence_share == 0:
        return
    rng = np.random.default_rng([cfg.seed, STREAM[split], index, _WEAK_STREAM])
    labels = timeline.amplitude[:, : timeline.num_labels]  # a view: edits the timeline
    body = (timeline.region == _BODY)[:, None]
    weak = body & (labels > 0) & (rng.random(labels.shape) < cfg.weak_evidence_share)
    strength = rng.uniform(VISIBLE_EVIDENCE, cfg.min_amplitude, size=labels.shape)
    labels[weak] = strength[weak]


def _render(
    rng: np.random.Generator, world: SyntheticWorld, cfg: SyntheticConfig, timeline: _Timeline
) -> np.ndarray:
    """Float32 features [n, 1152]: per-unit means plus per-frame noise."""
    f32 = np.float32
    num_units = len(timeline.lengths)
    # This video's version of each of its classes (prototype bent by a random vector).
    bend = (
        rng.standard_normal((len(timeline.classes), FEATURE_SIZE), dtype=f32) * world.instance_scale
    )
    prototypes = world.prototypes[timeline.classes] + bend

    means = rng.standard_normal((num_units, FEATURE_SIZE), dtype=f32) * f32(cfg.shot_noise)
    means += world.mean + rng.standard_normal(FEATURE_SIZE, dtype=f32) * f32(cfg.video_noise)
    amplitude = timeline.amplitude.astype(f32)
    for k in range(len(timeline.classes)):  # a few classes: cheaper and more reproducible than BLAS
        means += amplitude[:, k, None] * prototypes[k]
    body = timeline.region == _BODY
    scale = timeline.background_scale.astype(f32)[body, None]
    means[body] += scale * world.backgrounds[timeline.background[body]]
    jitter = rng.standard_normal((num_units, FEATURE_SIZE), dtype=f32) * f32(cfg.template_jitter)
    for region, templates in ((_INTRO, world.intro_templates), (_OUTRO, world.outro_templates)):
        rows = timeline.region == region
        means[rows] += templates[timeline.template[rows]] + jitter[rows]

    n = int(timeline.lengths.sum())
    noise_bytes = np.frombuffer(rng.bytes(n * FEATURE_SIZE), dtype=np.uint8).reshape(
        n, FEATURE_SIZE
    )
    frames = _GAUSS_LEVELS[noise_bytes]
    frames *= f32(cfg.frame_noise)
    frames += np.repeat(means, timeline.lengths, axis=0)
    return frames


def _evidence_map(timeline: _Timeline, num_classes: int) -> np.ndarray:
    """float32 [n, C]: each class's relative amplitude in each frame."""
    per_unit = np.zeros((len(timeline.lengths), num_classes), dtype=np.float32)
    per_unit[:, timeline.classes] = timeline.amplitude
    return np.repeat(per_unit, timeline.lengths, axis=0)


def quantize(features: np.ndarray) -> np.ndarray:
    """The YT8M uint8 path: clip to [-2, 2], byte = round((x + 1.9921875) * 255 / 4), so that
    ``dequantize(byte)`` is within half a step (2/255) of the clipped value. uint8, same shape."""
    x = np.clip(features, -2.0, 2.0).astype(np.float32)
    x += np.float32(1.9921875)
    x *= np.float32(255.0 / 4.0)
    np.rint(x, out=x)
    np.clip(x, 0, 255, out=x)
    return x.astype(np.uint8)
