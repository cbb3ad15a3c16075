"""Export a checkpoint (or one member of a mixture) to TorchScript and ONNX, checked against
PyTorch: ``python export.py ckpt=PATH [output=PREFIX] [formats=[onnx]] [member=[0]]`` (Hydra;
see conf/export.yaml)."""

import hydra
from omegaconf import DictConfig

from vidistill.configs import register_configs
from vidistill.inference.export import export


@hydra.main(version_base="1.3", config_path="conf", config_name="export")
def main(cfg: DictConfig) -> dict:
    output = cfg.output or f"{cfg.paths.output_dir}/model"
    record = export(
        cfg.ckpt,
        output,
        formats=list(cfg.formats),
        member=cfg.member,
        frames=cfg.frames,
        overwrite=cfg.overwrite,
        opset=cfg.opset,
    )
    for name, result in record["exports"].items():
        print(
            f"{name:<12} {result['path']}  max |exported - PyTorch| = {result['max_abs_difference']:.3g}"
        )
    return record


if __name__ == "__main__":
    register_configs()
    main()
