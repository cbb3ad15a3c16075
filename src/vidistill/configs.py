"""Structured configs registered with Hydra's ConfigStore. The entry points (train.py, eval.py,
predict.py, localize.py, export.py, flops.py) call :func:`register_configs` before Hydra composes,
and so does anything else that composes the configs of ``conf/`` (tests, notebooks)."""

from __future__ import annotations

from hydra.core.config_store import ConfigStore

from vidistill.data.synthetic import SyntheticConfig


def register_configs() -> None:
    """Register the synthetic generator's knobs as a typed node (``data/generator``), so
    ``data.generator.num_trian=...`` is rejected by name instead of silently ignored.
    Idempotent."""
    ConfigStore.instance().store(group="data/generator", name="synthetic", node=SyntheticConfig)
