"""Train a vidistill model: ``python train.py [overrides]`` (Hydra; see conf/config.yaml)."""

import hydra
from omegaconf import DictConfig

from vidistill.configs import register_configs
from vidistill.runs import train


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    return train(cfg)


if __name__ == "__main__":
    register_configs()
    main()
