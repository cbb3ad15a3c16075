"""The model presets of ``conf/model/`` as Python objects.

The YAML files are the one definition of every preset (the CPU-sized ones and the papers'); this
module reads them through Hydra, so a preset built on another (``mod`` on ``mix``) resolves as in
``train.py``::

    build_backbone("nextvlad", num_classes=200)                 # the CPU NeXtVLAD
    build_backbone("nextvlad_paper", num_classes=3862)          # the paper's (8G, 128K, X2, 2048H)
    build_backbone("hrnn_paper", 3862, num_blocks=5)            # with keys of the preset replaced
    build_backbone("mix", 20, leaf={"clusters": 4})             # nested keys merge
"""

from __future__ import annotations

import functools
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from vidistill.layout import CONFIG_DIR
from vidistill.models.base import Backbone


def build_backbone(name: str, num_classes: int, **overrides: Any) -> Backbone:
    """The backbone of ``conf/model/<name>.yaml`` for ``num_classes`` classes, with
    ``overrides`` merged into its keys (a dict merges into a nested node)."""
    config = OmegaConf.merge(backbone_config(name, num_classes), overrides)
    return instantiate(config)


@functools.cache
def backbone_config(name: str, num_classes: int) -> Any:
    """The resolved ``backbone`` node of a preset (read once per name and class count)."""
    from vidistill.configs import register_configs  # deferred: it imports the data layer

    if not (CONFIG_DIR / "model" / f"{name}.yaml").is_file():
        presets = sorted(path.stem for path in (CONFIG_DIR / "model").glob("[!_]*.yaml"))
        raise ValueError(f"no model preset {name!r}; presets: {', '.join(presets)}")
    register_configs()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(
            config_name="config", overrides=[f"model={name}", f"num_classes={num_classes}"]
        )
    return OmegaConf.create(OmegaConf.to_container(cfg.model.backbone, resolve=True))
