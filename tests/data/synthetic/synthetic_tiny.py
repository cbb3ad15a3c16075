"""Small configs and file helpers shared by the synthetic generator's tests."""

from __future__ import annotations

from pathlib import Path

from vidistill.data.synthetic import RATED_SPLITS, SyntheticConfig

TINY = dict(
    num_classes=30,
    num_segment_classes=12,
    num_clusters=6,
    num_train=7,
    num_validate=4,
    num_test=3,
    num_segment=5,
    train_shards=3,
    validate_shards=2,
    test_shards=2,
    segment_shards=2,
    min_frames=12,
    max_frames=40,
    mean_frames=28.0,
    std_frames=10.0,
)


def tiny(**overrides) -> SyntheticConfig:
    return SyntheticConfig(**{**TINY, **overrides})


def files_of(split: str, out: Path) -> tuple[list[Path], list[Path]]:
    if split in RATED_SPLITS:
        return sorted((out / "segment").glob(f"{split.removeprefix('segment_')}*.tfrecord")), []
    return sorted((out / "frame").glob(f"{split}*.tfrecord")), sorted(
        (out / "video").glob(f"{split}*.tfrecord")
    )


def tree_bytes(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
