"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from shardtools import write_shards


@pytest.fixture
def shards(tmp_path: Path) -> tuple[Path, dict]:
    """Three shards of 7 videos each (1 to 39 frames), 10 classes."""
    return tmp_path / "shards", write_shards(tmp_path / "shards", num_files=3, per_file=7)


@pytest.fixture(autouse=True)
def _index_cache(tmp_path_factory, monkeypatch):
    """Keep record-index caches out of the user's home."""
    monkeypatch.setenv("VIDISTILL_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
