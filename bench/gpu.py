"""Does the input pipeline keep a GPU busy? ``python bench/gpu.py [--tiny] [--device cuda]
[--workers N]``.

For the paper-size NeXtVLAD, H-RNN and MOD presets it measures
  * the model's training rate on the device: forward, BCE, backward and an Adam step on
    synthetic batches already there (bf16 autocast on CUDA, as trainer=gpu trains; fp32 on the
    CPU), so neither decoding nor the copy to the device is in it;
  * the rate the data loader supplies: the project's data module reading real TFRecord shards of
    long (120-300 frame) videos with N workers, batches of every frame, copied to the device as
    Lightning copies them (pinned, non-blocking on CUDA) and dequantized there;
and reports the loader's headroom, loader rate / model rate (target >= 1.5: the loader keeps up
with the step even when decoding slows down), the per-core decode rate (one process, one
thread) and the workers a GPU needs for headroom 1.5: ceil(1.5 * model rate / per-core rate).

``--tiny`` shrinks the models and the shards so that it runs in seconds on a CPU (the test
suite runs it); its numbers say nothing about a GPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from lightning_fabric.utilities.apply_func import move_data_to_device

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from vidistill.configs import register_configs  # noqa: E402
from vidistill.data.datamodule import SyntheticDataModule  # noqa: E402
from vidistill.data.synthetic import SyntheticConfig  # noqa: E402
from vidistill.distill import multilabel_bce  # noqa: E402

CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "conf")
HEADROOM = 1.5
MAX_FRAMES = 300
# The presets, and the overrides that shrink each to a few thousand parameters for --tiny.
PRESETS = {
    "nextvlad_paper": [
        "model.backbone.clusters=4",
        "model.backbone.groups=2",
        "model.backbone.expansion=1",
        "model.backbone.hidden_size=16",
    ],
    "hrnn_paper": ["model.backbone.lower_size=16", "model.backbone.upper_size=16"],
    "mod_paper": [
        "model.backbone.branching=[2]",
        "model.backbone.leaf.clusters=4",
        "model.backbone.leaf.groups=2",
        "model.backbone.leaf.expansion=1",
        "model.backbone.leaf.hidden_size=16",
    ],
}
# YouTube-8M-like lengths (videos of 2 to 5 minutes, one frame per second), 300 at most.
GPU_DATA = SyntheticConfig(
    name="gpu_bench",
    seed=2,
    num_train=1200,
    num_validate=0,
    num_test=0,
    num_segment=0,
    train_shards=8,
    min_frames=120,
    max_frames=MAX_FRAMES,
    mean_frames=230.0,
)
TINY_DATA = dataclasses.replace(
    GPU_DATA,
    num_classes=20,
    num_segment_classes=10,
    num_clusters=5,
    num_train=48,
    train_shards=2,
    min_frames=20,
    max_frames=80,
    mean_frames=50.0,
)


def build_backbone(preset: str, overrides: list[str], num_classes: int) -> torch.nn.Module:
    """The preset's backbone, composed from conf/ as train.py composes it."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            config_name="config",
            overrides=[f"model={preset}", f"num_classes={num_classes}", *overrides],
        )
    return instantiate(cfg.model.backbone)


def device_batches(
    count: int, batch_size: int, num_classes: int, device: torch.device
) -> list[dict[str, torch.Tensor]]:
    """Synthetic training batches on ``device``: frames float32 [B, 300, 1152] (zero padding
    after each video's 120-300 frames), mask bool [B, 300], labels float [B, C] (~3 per video)."""
    generator = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(count):
        lengths = torch.randint(120, MAX_FRAMES + 1, (batch_size, 1), generator=generator)
        mask = torch.arange(MAX_FRAMES) < lengths
        frames = torch.randn(batch_size, MAX_FRAMES, 1152, generator=generator) * mask[..., None]
        labels = (
            torch.rand(batch_size, num_classes, generator=generator) < 3 / num_classes
        ).float()
        batch = {"frames": frames, "mask": mask, "labels": labels}
        batches.append({key: value.to(device) for key, value in batch.items()})
    return batches


def model_rate(model: torch.nn.Module, batches: list[dict], steps: int, repeats: int) -> float:
    """Training videos/s of ``model`` on ``batches`` (already on its device): the best of
    ``repeats`` timings of ``steps`` steps, after two warm-up steps."""
    device = batches[0]["frames"].device
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    autocast = device.type == "cuda"  # trainer=gpu's bf16-mixed

    def step(batch: dict) -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = model(batch["frames"], batch["mask"]).logits
        multilabel_bce(logits.float(), batch["labels"]).backward()
        optimizer.step()

    for batch in batches[:2]:
        step(batch)
    best = 0.0
    for _ in range(repeats):
        _synchronize(device)
        start = time.perf_counter()
        for i in range(steps):
            step(batches[i % len(batches)])
        _synchronize(device)
        best = max(best, steps * len(batches[0]["labels"]) / (time.perf_counter() - start))
    return best


def loader_rate(
    work_dir: str,
    data: SyntheticConfig,
    workers: int,
    batch_size: int,
    device: torch.device,
    repeats: int,
    deliver: bool = True,
) -> float:
    """Videos/s the training loader delivers to ``device`` (moved and dequantized as Lightning
    and the data module do; with ``deliver=False`` only as the loader hands them out), the best
    of ``repeats`` passes over the shards. Persistent workers, as trainer=gpu keeps them: the
    workers start once, before the first pass."""
    module = SyntheticDataModule(
        root=work_dir,
        generator=dataclasses.asdict(data),
        train_files="frame/train*.tfrecord",
        batch_size=batch_size,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
        max_frames=MAX_FRAMES,
    )
    module.setup("fit")
    loader = module.train_dataloader()
    best = 0.0
    try:
        for _ in range(repeats):
            start, videos = time.perf_counter(), 0
            for batch in loader:
                if deliver:
                    batch = move_data_to_device(batch, device)
                    batch = module.on_after_batch_transfer(batch, 0)
                videos += len(batch["ids"])
            _synchronize(device)
            best = max(best, videos / (time.perf_counter() - start))
    finally:
        if loader._iterator is not None:  # the workers ignore SIGTERM: shut them down here
            loader._iterator._shutdown_workers()
    return best


def per_core_rate(work_dir: str, data: SyntheticConfig, batch_size: int, repeats: int) -> float:
    """Videos/s one process decodes on one core (no workers, one torch thread): a worker's
    share of the loading, reading and batching quantized frames; the dequantization happens
    after the copy, on the device."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cpu = torch.device("cpu")
        return loader_rate(work_dir, data, 0, batch_size, cpu, repeats, deliver=False)
    finally:
        torch.set_num_threads(threads)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def report_model(name: str, rate: float, loader: float, per_core: float) -> str:
    """A preset's line: its rate, the loader's headroom over it and the workers for 1.5."""
    headroom = loader / rate
    verdict = "met" if headroom >= HEADROOM else "NOT met"
    needed = math.ceil(HEADROOM * rate / per_core)
    return (
        f"  model={name:<15} {rate:9.1f} videos/s  headroom {headroom:6.2f} "
        f"(target >= {HEADROOM}: {verdict})  workers for headroom {HEADROOM}: {needed}"
    )


def run(args: argparse.Namespace) -> None:
    device = torch.device(args.device)
    data = TINY_DATA if args.tiny else GPU_DATA
    num_classes = data.num_classes if args.tiny else 3862
    batch_size = args.batch_size or (8 if args.tiny else 80)
    steps = args.steps or (2 if args.tiny else 20)
    precision = "bf16 autocast" if device.type == "cuda" else "fp32"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device {device} ({name}), {precision}, {torch.get_num_threads()} torch threads")
    print(
        f"batches of {batch_size} videos x {MAX_FRAMES} frames, {num_classes} classes; shards of "
        f"{data.num_train} videos ({data.min_frames}-{data.max_frames} frames, mean "
        f"{data.mean_frames:.0f})"
    )
    per_core = per_core_rate(args.work_dir, data, batch_size, args.repeats)
    loader = loader_rate(args.work_dir, data, args.workers, batch_size, device, args.repeats)
    print(f"  per-core decode (1 process, 1 thread): {per_core:9.1f} videos/s")
    print(f"  loader, {args.workers} workers, to {device}: {loader:9.1f} videos/s")
    batches = device_batches(2, batch_size, num_classes, device)
    for preset, shrink in PRESETS.items():
        model = build_backbone(preset, shrink if args.tiny else [], num_classes).to(device)
        try:
            rate = model_rate(model.train(), batches, steps, args.repeats)
        except torch.OutOfMemoryError:
            print(f"  model={preset:<15} out of memory on {device} at batch {batch_size}")
            continue
        finally:
            del model
        print(report_model(preset, rate, loader, per_core), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="small models and data, seconds")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--workers", type=int, default=4, help="loader workers (data.num_workers)")
    parser.add_argument("--batch-size", type=int, help="default: data=yt8m's 80 (--tiny: 8)")
    parser.add_argument("--steps", type=int, help="timed training steps (default 20, --tiny 2)")
    parser.add_argument("--repeats", type=int, default=2, help="timings per rate (best kept)")
    parser.add_argument("--work-dir", default="data/bench", help="where the shards are made")
    args = parser.parse_args(argv)
    register_configs()  # conf/ composed as train.py composes it
    run(args)


if __name__ == "__main__":
    main()
