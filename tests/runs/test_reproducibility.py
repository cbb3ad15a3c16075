"""Seeds: the same seed gives the same run, another seed another one; every run records the
bootstrap interval of its test GAP."""

from __future__ import annotations

import json

import pytest

from hydra_helpers import NEXTVLAD, compose_config
from vidistill.runs import train

RUN = [*NEXTVLAD, "trainer.deterministic=true", "data.num_workers=2", "trainer.max_epochs=2"]


def metrics_of(tmp_path, run: str, seed: int) -> dict[str, float]:
    train(compose_config(tmp_path, [*RUN, f"seed={seed}"], run=run))
    return json.loads((tmp_path / run / "metrics.json").read_text())["metrics"]


def test_same_seed_same_metrics_and_another_seed_differs(tmp_path):
    first = metrics_of(tmp_path, "a", seed=3)
    again = metrics_of(tmp_path, "b", seed=3)
    other = metrics_of(tmp_path, "c", seed=4)
    assert first.keys() == again.keys()
    for key, value in first.items():
        assert again[key] == pytest.approx(value, abs=1e-6), key
    assert other["val/gap"] != pytest.approx(first["val/gap"], abs=1e-6)
    # The test GAP's 95% bootstrap interval over the test videos, seeded: it brackets the GAP.
    for run in (first, other):
        assert run["test/gap_ci_low"] < run["test/gap"] < run["test/gap_ci_high"]
