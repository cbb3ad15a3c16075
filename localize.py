"""Temporal localization: ``python localize.py video_ckpt=PATH segment_ckpt=PATH [overrides]``
writes a 2019 ``Class,Segments`` submission (Hydra; see conf/localize.yaml)."""

from typing import Any

import hydra
from omegaconf import DictConfig

from vidistill.localization import run


@hydra.main(version_base="1.3", config_path="conf", config_name="localize")
def main(cfg: DictConfig) -> dict[str, Any]:
    return run(cfg)


if __name__ == "__main__":
    main()
