"""The world of a synthetic dataset: what every video of one config shares (class prior,
clusters, prototypes, intro/outro templates, background scenes, segment whitelist)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from vidistill.data.synthetic.config import SyntheticConfig
from vidistill.features import AUDIO_SIZE, FEATURE_SIZE, RGB_SIZE

STREAM = {
    "world": 0,
    "train": 1,
    "validate": 2,
    "test": 3,
    "segment_validate": 4,
    "segment_test": 5,
    "segment_tune": 6,
}
"""Second entry of every random seed (``[seed, STREAM[...], ...]``): the world draws from its own
stream, each split's videos from theirs. Fixed values, never reordered: they decide the bytes."""


@dataclass(frozen=True)
class SyntheticWorld:
    """What all videos of one config share. Feature arrays are float32 with 1152 columns
    (rgb then audio)."""

    prior: np.ndarray  # [C] float64, class frequency prior, sums to 1
    cluster_of: np.ndarray  # [C] int64
    cluster_members: tuple[np.ndarray, ...]  # per cluster, its classes (int64)
    prototypes: np.ndarray  # [C, 1152]
    instance_scale: np.ndarray  # [1152] per-dimension std of a video's prototype bend
    mean: np.ndarray  # [1152]
    intro_templates: np.ndarray  # [Ti, 1152]
    outro_templates: np.ndarray  # [To, 1152]
    backgrounds: np.ndarray  # [B, 1152], rgb part of norm background_amplitude
    whitelist: np.ndarray  # [S] sorted int64, the segment-task classes


def build_world(config: SyntheticConfig) -> SyntheticWorld:
    """The shared structure of a config's dataset (cached per config)."""
    return _build_world(json.dumps(config.to_dict(), sort_keys=True))


@lru_cache(maxsize=8)
def _build_world(config_json: str) -> SyntheticWorld:
    cfg = SyntheticConfig(**json.loads(config_json))
    rng = np.random.default_rng([cfg.seed, STREAM["world"]])
    num_classes = cfg.num_classes
    prior = 1.0 / (np.arange(num_classes) + cfg.frequency_offset)
    prior /= prior.sum()
    cluster_of = (rng.permutation(num_classes) % cfg.num_clusters).astype(np.int64)
    members = tuple(np.flatnonzero(cluster_of == k) for k in range(cfg.num_clusters))

    def prototypes(dim: int, norm: float) -> np.ndarray:
        shared = _unit_rows(rng, cfg.num_clusters, dim)[cluster_of]
        own = _unit_rows(rng, num_classes, dim)
        mixed = math.sqrt(cfg.cluster_share) * shared + math.sqrt(1 - cfg.cluster_share) * own
        return norm * mixed / np.linalg.norm(mixed, axis=1, keepdims=True)

    audio_norm = cfg.signal_amplitude * cfg.audio_strength
    protos = np.hstack(
        [prototypes(RGB_SIZE, cfg.signal_amplitude), prototypes(AUDIO_SIZE, audio_norm)]
    )
    instance_scale = np.concatenate(
        [
            np.full(RGB_SIZE, cfg.instance_variation * cfg.signal_amplitude / math.sqrt(RGB_SIZE)),
            np.full(AUDIO_SIZE, cfg.instance_variation * audio_norm / math.sqrt(AUDIO_SIZE)),
        ]
    )
    mean = cfg.feature_mean_std * rng.standard_normal(FEATURE_SIZE)
    intro = cfg.template_scale * rng.standard_normal((cfg.num_intro_templates, FEATURE_SIZE))
    outro = cfg.template_scale * rng.standard_normal((cfg.num_outro_templates, FEATURE_SIZE))
    backgrounds = cfg.background_amplitude * np.hstack(
        [
            _unit_rows(rng, cfg.num_background_templates, RGB_SIZE),
            _unit_rows(rng, cfg.num_background_templates, AUDIO_SIZE),
        ]
    )
    whitelist = np.sort(rng.choice(num_classes, cfg.num_segment_classes, replace=False)).astype(
        np.int64
    )
    f32 = np.float32
    arrays = dict(
        prior=prior,
        cluster_of=cluster_of,
        prototypes=protos.astype(f32),
        instance_scale=instance_scale.astype(f32),
        mean=mean.astype(f32),
        intro_templates=intro.astype(f32),
        outro_templates=outro.astype(f32),
        backgrounds=backgrounds.astype(f32),
        whitelist=whitelist,
    )
    for array in (*arrays.values(), *members):
        array.setflags(write=False)  # shared by every caller through the cache
    return SyntheticWorld(cluster_members=members, **arrays)


def _unit_rows(rng: np.random.Generator, count: int, dim: int) -> np.ndarray:
    """``count`` random unit vectors of ``dim`` dimensions, float64 [count, dim]."""
    rows = rng.standard_normal((count, dim))
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)
