"""Structured configs registered with Hydra's ConfigStore, and presets of conf/ by name.

The entry points (train.py, eval.py, predict.py, localize.py, export.py, flops.py) call
:func:`register_configs` before Hydra composes, and so does anything else that composes the
configs of ``conf/`` (tests, notebooks)."""

from __future__ import annotations

from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from vidistill.data.synthetic import SyntheticConfig
from vidistill.layout import CONFIG_DIR


def register_configs() -> None:
    """Register the synthetic generator's knobs as a typed node (``data/generator``), so
    ``data.generator.num_trian=...`` is rejected by name instead of silently ignored.
    Idempotent."""
    ConfigStore.instance().store(group="data/generator", name="synthetic", node=SyntheticConfig)


def group_preset(group: str, name: str) -> dict[str, Any]:
    """The node a config group's option fills, as ``python train.py <group>=<name>`` composes
    it (``group_preset("model", "mod")``: the MODNeXtVLAD preset, built on ``mix``), as plain
    containers with its interpolations (``${num_classes}``, ``${T}``) left to the config it
    is put in. ValueError listing the options for an unknown name."""
    options = sorted(path.stem for path in (CONFIG_DIR / group).glob("[!_]*.yaml"))
    if name not in options:
        raise ValueError(f"no {group} preset {name!r}; presets: {', '.join(options)}")
    register_configs()
    overrides = [f"{group}={name}"]
    if GlobalHydra.instance().is_initialized():  # inside a Hydra app: its own search path
        cfg = compose(config_name="config", overrides=overrides)
    else:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(config_name="config", overrides=overrides)
    return OmegaConf.to_container(cfg[group], resolve=False)
