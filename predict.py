"""Write a checkpoint's predictions in the 2018 Kaggle format: ``python predict.py ckpt=PATH
[output=PATH.csv] [top_k=20] [overwrite=true]`` (Hydra; see conf/predict.yaml)."""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from vidistill.configs import register_configs
from vidistill.runs import write_predictions


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> Path:
    return write_predictions(cfg)


if __name__ == "__main__":
    register_configs()
    main()
