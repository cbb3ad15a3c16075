"""Frame samplers: which frames of a video a model sees.

A sampler maps the number of usable frames ``n`` of a video (already truncated to ``max_frames``)
to sorted frame indices. The data layer applies it to frame indices *before* decoding, so frames
that are not selected are never copied nor dequantized.

Conventions, over the video's true length (not the padded axis the fewer-frames authors used):

* ``all``: every frame.
* ``uniform``: ``k`` frames at the centres of ``k`` equal bins, ``floor((i + 0.5) * n / k)``.
* ``stride``: frames ``0, j, 2j, ...`` (``stride=j``), optionally capped at ``k`` frames.
* ``random``: ``k`` distinct frames drawn uniformly, sorted. Random per epoch in training, fixed
  per video at evaluation (the generator is seeded from the video id).
* ``first`` / ``middle`` / ``last``: ``k`` consecutive frames at the start, centred on ``n // 2``
  (start ``(n - k) // 2``), or at the end.
* ``learned``: every frame is read, and the model's learned selector picks ``k`` of them
  (:mod:`vidistill.models.selection`; ``selector=audio``). Inference reads the selector's cheap
  signal of every frame and dequantizes only the chosen frames.
* ``first_middle_last``: ``k // 3`` frames from each of the three regions above; the remainder of
  ``k`` not divisible by 3 goes to the middle region.

A video shorter than ``k`` frames yields all of its ``n`` frames (no repetition); the batch mask
marks only those.

A new sampler is one subclass of :class:`FrameSampler` that sets its own ``name``: defining it
registers it in :data:`SAMPLERS`, and the names in its ``settings`` become data config keys of the
same name (``StrideSampler``: ``data.stride``), which :class:`vidistill.data.frames.FrameSelection`
hands to its constructor.
"""

from __future__ import annotations

import zlib
from typing import Any, ClassVar

import numpy as np

# Every sampler by name, in definition order; filled by FrameSampler.__init_subclass__.
SAMPLERS: dict[str, type[FrameSampler]] = {}

# Keys a FrameSelection has besides the sampler's settings: a setting cannot take their names.
RESERVED_KEYS = ("sampler", "k", "max_frames", "seed")


def is_integer(value: Any) -> bool:
    """Whether ``value`` is an int (numpy's included), not a bool."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


class FrameSampler:
    """Base class. ``k`` is the frame budget (``None`` = all frames).

    Class attributes a subclass sets: ``name`` (registers it), ``settings`` (its constructor's
    keyword arguments beyond ``k``: it is built as ``cls(k, **settings)``), ``uses_k`` (False:
    it has no frame budget and is built as ``cls(**settings)``), ``needs_k`` (``k`` is
    required), ``is_random`` (it draws from the ``rng`` it is called with).
    """

    name: ClassVar[str] = "all"
    settings: ClassVar[tuple[str, ...]] = ()
    uses_k: ClassVar[bool] = True
    needs_k: ClassVar[bool] = False
    is_random: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        # A subclass without a name of its own is a base for others, not a sampler.
        if "name" in cls.__dict__:
            _register(cls)

    def __init__(self, k: int | None = None):
        if self.needs_k and k is None:
            raise ValueError(f"sampler {self.name!r} needs k (the number of frames to keep)")
        if k is not None and (not is_integer(k) or k <= 0):
            raise ValueError(f"k must be a positive integer, got {k!r}")
        self.k = None if k is None else int(k)

    def output_frames(self, max_frames: int) -> int:
        """The most frames this sampler yields for videos truncated to ``max_frames``."""
        if self.k is not None and self.k > max_frames:
            raise ValueError(
                f"sampler {self.name!r} asks for k={self.k} frames but videos are truncated to "
                f"max_frames={max_frames}"
            )
        return max_frames if self.k is None else self.k

    def __call__(self, n: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """Sorted int64 indices into ``range(n)``; ``rng`` is used only by random samplers."""
        if n <= 0:
            raise ValueError(f"cannot sample frames from a video with {n} frames")
        if self.k is None or n <= self.k:
            return np.arange(n, dtype=np.int64)
        return self._select(n, self.k, rng)

    def _select(self, n: int, k: int, rng: np.random.Generator | None) -> np.ndarray:
        return np.arange(n, dtype=np.int64)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(k={self.k})"


def _register(cls: type[FrameSampler]) -> None:
    taken = SAMPLERS.get(cls.name)
    if taken is not None:
        raise ValueError(f"frame sampler name {cls.name!r} is taken by {taken.__qualname__}")
    reserved = sorted(set(cls.settings) & set(RESERVED_KEYS))
    if reserved:
        raise ValueError(
            f"frame sampler {cls.name!r}: {', '.join(reserved)} cannot be a setting's name"
        )
    SAMPLERS[cls.name] = cls


class AllFrames(FrameSampler):
    name = "all"
    uses_k = False


class UniformSampler(FrameSampler):
    name = "uniform"
    needs_k = True

    def _select(self, n, k, rng):
        return ((np.arange(k) + 0.5) * n / k).astype(np.int64)


class StrideSampler(FrameSampler):
    """Every ``stride``-th frame from frame 0, at most ``k`` of them when ``k`` is given."""

    name = "stride"
    settings = ("stride",)

    def __init__(self, k: int | None = None, stride: int | None = None):
        super().__init__(k)
        if not is_integer(stride) or stride <= 0:
            raise ValueError(f"sampler 'stride' needs a positive integer stride, got {stride!r}")
        self.stride = int(stride)

    def output_frames(self, max_frames: int) -> int:
        budget = -(-max_frames // self.stride)
        return budget if self.k is None else min(super().output_frames(max_frames), budget)

    def __call__(self, n: int, rng: np.random.Generator | None = None) -> np.ndarray:
        if n <= 0:
            raise ValueError(f"cannot sample frames from a video with {n} frames")
        return np.arange(0, n, self.stride, dtype=np.int64)[: self.k]

    def __repr__(self) -> str:
        return f"StrideSampler(k={self.k}, stride={self.stride})"


class RandomSampler(FrameSampler):
    name = "random"
    needs_k = True
    is_random = True

    def _select(self, n, k, rng):
        if rng is None:
            raise ValueError("sampler 'random' needs a random generator")
        return np.sort(rng.choice(n, size=k, replace=False)).astype(np.int64)


class FirstSampler(FrameSampler):
    name = "first"
    needs_k = True

    def _select(self, n, k, rng):
        return np.arange(k, dtype=np.int64)


class MiddleSampler(FrameSampler):
    name = "middle"
    needs_k = True

    def _select(self, n, k, rng):
        start = (n - k) // 2
        return np.arange(start, start + k, dtype=np.int64)


class LastSampler(FrameSampler):
    name = "last"
    needs_k = True

    def _select(self, n, k, rng):
        return np.arange(n - k, n, dtype=np.int64)


class FirstMiddleLastSampler(FrameSampler):
    name = "first_middle_last"
    needs_k = True

    def _select(self, n, k, rng):
        edge = k // 3
        middle = k - 2 * edge
        start = (n - middle) // 2
        # n > k guarantees the three runs do not overlap: edge <= start and start + middle <= n - edge.
        return np.concatenate(
            [np.arange(edge), np.arange(start, start + middle), np.arange(n - edge, n)]
        ).astype(np.int64)


class LearnedSampler(FrameSampler):
    """The model chooses: the data delivers every frame and the model's selector keeps ``k``."""

    name = "learned"
    needs_k = True

    def output_frames(self, max_frames: int) -> int:
        super().output_frames(max_frames)  # k must fit in max_frames
        return max_frames

    def __call__(self, n: int, rng: np.random.Generator | None = None) -> np.ndarray:
        if n <= 0:
            raise ValueError(f"cannot sample frames from a video with {n} frames")
        return np.arange(n, dtype=np.int64)


def sampler_class(name: str) -> type[FrameSampler]:
    """The sampler registered as ``name``; ValueError listing the known ones."""
    if not isinstance(name, str) or name not in SAMPLERS:
        raise ValueError(f"unknown frame sampler {name!r}; choose one of: {', '.join(SAMPLERS)}")
    return SAMPLERS[name]


def build_sampler(name: str, k: int | None = None, **settings: Any) -> FrameSampler:
    """Construct a sampler by name; ``k`` is ignored by a sampler without a frame budget
    (``all``), ``settings`` are its own (``stride=j``)."""
    cls = sampler_class(name)
    foreign = sorted(set(settings) - set(cls.settings))
    if foreign:
        raise ValueError(
            f"sampler {name!r} takes no setting {', '.join(map(repr, foreign))} "
            f"(its settings: {', '.join(cls.settings) or 'none'})"
        )
    return cls(k, **settings) if cls.uses_k else cls(**settings)


def setting_names() -> tuple[str, ...]:
    """The settings of every registered sampler, each once (``stride``, ...)."""
    return tuple(dict.fromkeys(name for cls in SAMPLERS.values() for name in cls.settings))


def video_rng(seed: int, video_id: str, epoch: int | None = None) -> np.random.Generator:
    """A generator fixed by (seed, video id) at evaluation and by (seed, epoch, video id) in
    training, so runs, resumes and worker layouts all draw the same frames."""
    key = [int(seed) & 0xFFFFFFFF, zlib.crc32(video_id.encode("utf-8"))]
    if epoch is not None:
        key.append(int(epoch))
    return np.random.default_rng(key)
