"""Composing the real Hydra configs (conf/) on a tiny synthetic set, for end-to-end tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from vidistill.configs import register_configs

CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "conf")
TINY_DATA = [
    "data.generator.num_classes=20",
    "data.generator.num_segment_classes=10",
    "data.generator.num_clusters=5",
    "data.generator.num_train=96",
    "data.generator.num_validate=48",
    "data.generator.num_test=48",
    "data.generator.num_segment=8",
    "data.generator.train_shards=2",
    "data.generator.validate_shards=2",
    "data.generator.test_shards=2",
    "data.generator.segment_shards=1",
    "data.generator.mean_frames=40",
    "data.generator.min_frames=20",
    "data.generator.max_frames=80",
    "data.batch_size=16",
    "data.num_workers=0",
]
# A NeXtVLAD small enough for seconds per training run.
NEXTVLAD = [
    "model=nextvlad",
    "model.backbone.clusters=4",
    "model.backbone.groups=4",
    "model.backbone.expansion=1",
    "model.backbone.hidden_size=16",
]
# Only conf/config.yaml (train.py) has these groups.
TRAIN_ONLY = ["trainer.max_epochs=2", "callbacks.rich_progress_bar=null"]


def compose_config(
    tmp_path: Path, overrides: list[str], config_name: str = "config", run: str = "run"
) -> DictConfig:
    """``config_name`` composed as its entry point would, with data under ``tmp_path/data``
    (shared by every run in ``tmp_path``) and the run directory ``tmp_path/<run>``, created if
    missing (a resumed run composes again into the same one)."""
    register_configs()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            config_name=config_name,
            return_hydra_config=True,
            overrides=[
                *TINY_DATA,
                *(TRAIN_ONLY if config_name == "config" else []),
                f"paths.root_dir={tmp_path}",
                f"paths.data_dir={tmp_path / 'data'}",
                *overrides,
            ],
        )
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / run)
    Path(cfg.paths.output_dir).mkdir(parents=True, exist_ok=True)
    return cfg


def segment_finetune(pretrained: str, epochs: int = 1) -> list[str]:
    """Overrides for ``experiment=segment_finetune`` from a checkpoint, sized for the tiny set."""
    return [
        "experiment=segment_finetune",
        f"pretrained={pretrained}",
        "data.batch_size=16",
        "data.eval_batch_size=16",
        f"trainer.max_epochs={epochs}",
    ]


def run_sweep(
    tmp_path: Path, overrides: list[str], check: bool = True, data_dir: Path | None = None
) -> Path:
    """``train.py -m`` in a subprocess on the tiny synthetic set (one epoch per job, data under
    ``data_dir``, by default ``tmp_path/data``: sweeps given one directory share the set, whose
    generation is locked); returns the sweep directory ``tmp_path/multirun``. The command's
    output goes to ``tmp_path/sweep.log``. With ``check``, AssertionError with the end of
    stderr if the sweep fails."""
    directory = tmp_path / "multirun"
    command = [
        sys.executable,
        "train.py",
        "-m",
        *TINY_DATA,
        "trainer.max_epochs=1",
        "test=false",
        "callbacks.rich_progress_bar=null",
        f"paths.root_dir={tmp_path}",
        f"paths.data_dir={data_dir or tmp_path / 'data'}",
        f"hydra.sweep.dir={directory}",
        *overrides,
    ]
    root = Path(CONFIG_DIR).parent
    result = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=600)
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "sweep.log").write_text(result.stdout + result.stderr)
    assert not check or result.returncode == 0, result.stderr[-3000:]
    return directory
