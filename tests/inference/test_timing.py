"""Alternating timing passes: every predictor in turn each round, the fastest pass kept."""

from __future__ import annotations

import pytest

from vidistill.inference import timing


def test_predictors_take_turns_and_keep_their_fastest_pass(monkeypatch, tmp_path):
    calls = []
    seconds = {"teacher": iter([4.0, 2.0, 3.0]), "student": iter([1.0, 0.5, 0.8])}

    def fake_pass(predictor, files, output, **settings):
        calls.append((predictor, settings["batch_size"], settings["num_workers"]))
        assert settings["overwrite"] and settings["top_k"] == 20
        return {"videos": 100, "seconds": next(seconds[predictor])}

    monkeypatch.setattr(timing, "predict_to_file", fake_pass)
    rates = timing.alternating_best_rates(
        ["teacher", "student"], ["a.tfrecord"], repeats=3, batch_size=8, num_workers=1
    )
    assert rates == [50.0, 200.0]
    assert [c[0] for c in calls] == ["teacher", "student"] * 3
    assert {c[1:] for c in calls} == {(8, 1)}
    with pytest.raises(ValueError, match="repeats"):
        timing.alternating_best_rates(["teacher"], [], repeats=0)
