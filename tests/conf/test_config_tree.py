"""The config tree: each group fills the key it is named for, and the short names of the loss
combinations (``losses=``) and of the two-stage variant (``distill=two_stage``) give exactly the
config of the canonical groups they stand for."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from hydra_helpers import CONFIG_DIR
from vidistill.configs import register_configs

DISTILL = Path(CONFIG_DIR, "distill")
WEIGHT_SETS = sorted(p.stem for p in (DISTILL / "weights").glob("*.yaml"))


def _compose(*overrides: str) -> dict:
    register_configs()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=list(overrides))
    return OmegaConf.to_container(cfg)


def test_terms_and_weights_fill_the_keys_their_groups_are_named_for():
    cfg = _compose("distill=serial")
    terms = {p.stem for p in (DISTILL / "terms").glob("*.yaml")}
    assert set(cfg["distill"]["terms"]) == terms
    assert cfg["distill"]["terms"]["pred"]["_target_"].endswith("PredictionLoss")
    # The default combination is the paper's (e): L_rep + L_pred + L_CE.
    assert cfg["distill"]["weights"] == {"rep": 1.0, "rep_blocks": 0.0, "pred": 1.0, "ce": 1.0}
    assert "losses" not in cfg["distill"]


@pytest.mark.parametrize("weights", WEIGHT_SETS)
def test_every_weight_set_names_every_term(weights):
    cfg = _compose("distill=serial", f"distill/weights={weights}")
    assert set(cfg["distill"]["weights"]) == set(cfg["distill"]["terms"])


@pytest.mark.parametrize("name", [name for name in WEIGHT_SETS if name != "rep"])
@pytest.mark.parametrize("mode", ["serial", "parallel"])
def test_losses_short_name_equals_the_weights_group(name, mode):
    assert _compose(f"distill={mode}", f"losses={name}") == _compose(
        f"distill={mode}", f"distill/weights={name}"
    )


def test_two_stage_is_serial_with_the_rep_weights_and_the_schedule():
    two_stage = _compose("distill=two_stage")
    assert two_stage == _compose("distill=serial", "losses=rep")
    assert two_stage["distill"]["weights"]["ce"] == 0.0
    assert two_stage["distill"]["classifier"] == "shared"
    stages = two_stage["callbacks"]["loss_schedule"]["stages"]
    assert [stage["weights"] for stage in stages] == [{"rep": 1.0}, {"ce": 1.0}]
    # Without the schedule, L_rep only would never train the classifier.
    assert "loss_schedule" not in _compose("distill=serial", "distill/weights=rep_ce")["callbacks"]


def test_a_loss_combination_without_a_teacher_student_run_is_refused():
    with pytest.raises(ConfigCompositionException, match="distill/weights"):
        _compose("losses=pred_ce")
