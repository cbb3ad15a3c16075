"""Size and inference cost of a model preset: ``python flops.py model=hrnn_paper k=30 format=json``
(Hydra; see conf/flops.yaml and :mod:`vidistill.models.flops` for the counting conventions)."""

import json

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from vidistill.configs import register_configs
from vidistill.models.flops import count


@hydra.main(version_base="1.3", config_path="conf", config_name="flops")
def main(cfg: DictConfig) -> dict[str, int | None]:
    result = count(instantiate(cfg.model.backbone), cfg.k)
    if cfg.format == "json":
        print(json.dumps({"frames": cfg.k, **result}))
    elif cfg.format == "text":
        paper = result["flops_paper"]
        print(f"frames       {cfg.k}")
        print(f"params       {result['params']:,}")
        print(f"flops_paper  {'n/a' if paper is None else f'{paper:,} ({paper / 1e9:.3f} G)'}")
        print(f"flops_total  {result['flops_total']:,} ({result['flops_total'] / 1e9:.3f} G)")
    else:
        raise ValueError(f"format must be 'json' or 'text', got {cfg.format!r}")
    return result


if __name__ == "__main__":
    register_configs()
    main()
