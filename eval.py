"""Evaluate a checkpoint: ``python eval.py ckpt=PATH [overrides]`` (Hydra; see conf/eval.yaml)."""

import hydra
from omegaconf import DictConfig

from vidistill.configs import register_configs
from vidistill.runs import evaluate


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> dict[str, float]:
    return evaluate(cfg)


if __name__ == "__main__":
    register_configs()
    main()
