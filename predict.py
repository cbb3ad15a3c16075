"""Write a checkpoint's predictions in the 2018 Kaggle format: ``python predict.py ckpt=PATH
[output=PATH.csv] [top_k=20] [overwrite=true]`` (Hydra; see conf/predict.yaml)."""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from vidistill.runner import predict


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> Path:
    return predict(cfg)


if __name__ == "__main__":
    main()
