"""Temporal localization: ``python localize.py video_ckpt=PATH segment_ckpt=PATH [overrides]``
writes a 2019 ``Class,Segments`` submission; ``python localize.py
experiment=localization_ablation`` runs the MOD paper's ablation (Hydra; see conf/localize.yaml)."""

from typing import Any

import hydra
from omegaconf import DictConfig

from vidistill.configs import register_configs
from vidistill.localization import ablation, pipeline


@hydra.main(version_base="1.3", config_path="conf", config_name="localize")
def main(cfg: DictConfig) -> Any:
    if cfg.get("ablation"):
        return ablation.run(cfg)
    return pipeline.run(cfg)


if __name__ == "__main__":
    register_configs()
    main()
