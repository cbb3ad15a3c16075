"""Frame selection as one value: which frames of each video a model sees.

A :class:`FrameSelection` (sampler, ``k``, ``max_frames``, ``seed`` and the sampler's own
settings) is built once from the data config's flat keys (:meth:`FrameSelection.from_config`:
``data.sampler``, ``k``, ``data.stride``, ``data.max_frames``, ``seed``), stored in every
checkpoint (:meth:`~FrameSelection.to_dict`) and read back from it
(:meth:`~FrameSelection.from_dict`), and handed as such to the datasets, inference, export,
localization and the results tables. Teacher-student training reads a second one from the same
config, the teacher's view (:func:`teacher_view`).

A sampler with a setting of its own needs nothing here: the setting is read from the config key
of its name (see :mod:`vidistill.data.samplers`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from vidistill.data.samplers import FrameSampler, build_sampler, is_integer, setting_names
from vidistill.features import MAX_FRAMES

TEACHER_PREFIX = "teacher_"
"""Prefix of the teacher view's keys in a data config (``teacher_sampler``, ``teacher_k``)."""


class _Settings(Mapping[str, Any]):
    """A sampler's settings by name, immutable and hashable, so that a selection is a value."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, Any] | None = None):
        self._items = tuple(sorted((items or {}).items(), key=lambda item: item[0]))

    def __getitem__(self, key: str) -> Any:
        for name, value in self._items:
            if name == key:
                return value
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(self._items)

    def __repr__(self) -> str:
        return repr(dict(self._items))


@dataclass(frozen=True)
class FrameSelection:
    """Which frames of each video a model sees; validated when constructed.

    Attributes:
        sampler: a registered sampler's name (:data:`vidistill.data.samplers.SAMPLERS`).
        k: the frame budget (None: none). Always None for a sampler without one (``all``),
            whatever was given, so that selections of the same frames compare equal.
        max_frames: videos are truncated to their first ``max_frames`` frames before sampling.
        seed: fixes a random sampler's frames, by (seed, video id) at evaluation and by (seed,
            epoch, video id) in training; datasets also shuffle with it.
        settings: the sampler's own settings by name (``{"stride": 5}``); a setting given as
            None is not given, one the sampler does not take is an error.
    """

    sampler: str = "all"
    k: int | None = None
    max_frames: int = MAX_FRAMES
    seed: int = 0
    settings: Mapping[str, Any] = field(default_factory=_Settings)

    def __post_init__(self) -> None:
        if not is_integer(self.max_frames) or self.max_frames <= 0:
            raise ValueError(f"max_frames must be a positive integer, got {self.max_frames!r}")
        if not is_integer(self.seed):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        given = {name: value for name, value in dict(self.settings).items() if value is not None}
        # object.__setattr__: the dataclass is frozen.
        object.__setattr__(self, "settings", _Settings(given))
        # Raises for an unknown sampler, a bad k or setting, a setting it does not take...
        sampler = self.build_sampler()
        sampler.output_frames(self.max_frames)  # ... and for k > max_frames.
        object.__setattr__(self, "k", sampler.k)
        object.__setattr__(self, "max_frames", int(self.max_frames))
        object.__setattr__(self, "seed", int(self.seed))

    def build_sampler(self) -> FrameSampler:
        """The sampler that picks the frames (a new one per call; they are cheap)."""
        return build_sampler(self.sampler, self.k, **self.settings)

    @property
    def frames_per_video(self) -> int:
        """The most frames a video gives, the frame axis T of its batches: ``k``, else what
        the sampler picks from ``max_frames`` frames."""
        return self.build_sampler().output_frames(self.max_frames)

    def to_dict(self) -> dict[str, Any]:
        """Plain flat keys named as in a data config (``sampler``, ``k``, ``max_frames``,
        ``seed``, then the sampler's settings): what checkpoints and records store."""
        return {
            "sampler": self.sampler,
            "k": self.k,
            "max_frames": self.max_frames,
            "seed": self.seed,
            **self.settings,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FrameSelection:
        """The inverse of :meth:`to_dict`. It also reads the keys of checkpoints written
        before frame selections were stored as such (``stride: None`` whatever the sampler),
        since a setting left None is not given. ValueError for a key of no frame selection."""
        unknown = sorted(set(data) - set(config_keys()))
        if unknown:
            raise ValueError(
                f"not frame-selection keys: {', '.join(unknown)} "
                f"(expected some of: {', '.join(config_keys())})"
            )
        return cls.from_config(data)

    @classmethod
    def from_config(cls, data: Mapping[str, Any], prefix: str = "") -> FrameSelection:
        """From a data config's flat keys, any others ignored: ``sampler`` (``all`` when
        absent), ``k``, ``max_frames`` and ``seed`` (the defaults when absent or None, as in a
        config that leaves them to a checkpoint) and the settings of every registered sampler
        (``stride``, ...), of which the chosen sampler must take those not None.

        ``prefix`` reads another view of the same videos: :data:`TEACHER_PREFIX` reads
        ``teacher_sampler``, ``teacher_k`` and ``teacher_<setting>``, with the same
        ``max_frames`` and ``seed``.
        """
        max_frames, seed = data.get("max_frames"), data.get("seed")
        return cls(
            sampler=data.get(prefix + "sampler", "all"),
            k=data.get(prefix + "k"),
            max_frames=MAX_FRAMES if max_frames is None else max_frames,
            seed=0 if seed is None else seed,
            settings={name: data.get(prefix + name) for name in setting_names()},
        )


def view_keys() -> tuple[str, ...]:
    """The keys in which views of the same videos differ: ``sampler``, ``k`` and the
    registered samplers' settings (``max_frames`` and ``seed`` are shared)."""
    return ("sampler", "k", *setting_names())


def config_keys(prefix: str = "") -> tuple[str, ...]:
    """The data config keys :meth:`FrameSelection.from_config` reads with ``prefix``."""
    return (*(prefix + key for key in view_keys()), "max_frames", "seed")


def teacher_view(data: Mapping[str, Any]) -> FrameSelection | None:
    """The teacher's view of teacher-student training, from a data config (see
    :meth:`FrameSelection.from_config` with :data:`TEACHER_PREFIX`); None without a
    ``teacher_sampler``."""
    if data.get(TEACHER_PREFIX + "sampler") is None:
        return None
    return FrameSelection.from_config(data, TEACHER_PREFIX)
