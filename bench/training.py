"""Training throughput of the CPU model presets, and how well NeXtVLAD uses the machine.

Every preset trains on the same batches of real synthetic YT8M videos (decoded once, held in
memory, so only the model is timed): forward, BCE, backward and an Adam step, as a training step
of ``train.py`` does. NeXtVLAD's achieved GFLOP/s (the matmul FLOPs its training step executes,
counted by torch's FlopCounterMode, over the step's time) is compared with a plain fp32 matmul
measured in the same run: the fraction says how much of the machine's matmul speed the step
reaches. (The FLOPs are those executed: an implementation that needs fewer for the same outputs
gets no credit for the ones it saves.)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from data_pipeline import BENCH_DATA
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torch.utils.flop_counter import FlopCounterMode

from vidistill.data import YT8MDataset, dequantize_batch, expand_files
from vidistill.data.synthetic import ensure_dataset
from vidistill.distill import multilabel_bce

CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "conf")
PRESETS = ("logistic", "dbof", "netvlad", "nextvlad", "hrnn")
NUM_CLASSES = 200
BATCHES = 4
BATCH_SIZE = 64


def load_batches(work_dir: str, count: int = BATCHES, **selection) -> list[dict]:
    """The first ``count`` dequantized training batches of the benchmark set; ``selection`` goes
    to :class:`YT8MDataset` (``frames``, ``teacher_frames``), all frames by default."""
    directory = ensure_dataset(work_dir, BENCH_DATA)
    files = expand_files(str(directory / "frame" / "train*.tfrecord"))
    dataset = YT8MDataset(files, num_classes=NUM_CLASSES, batch_size=BATCH_SIZE, **selection)
    batches = []
    for batch in dataset:
        batches.append(dequantize_batch(batch))
        if len(batches) == count:
            return batches
    raise RuntimeError(f"the benchmark set has fewer than {count} batches")


def build_backbone(preset: str) -> torch.nn.Module:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"model={preset}"])
    return instantiate(cfg.model.backbone, num_classes=NUM_CLASSES)


def training_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: dict) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss = multilabel_bce(model(batch["frames"], batch["mask"]).logits, batch["labels"])
    loss.backward()
    optimizer.step()


def examples_per_second(preset: str, batches: list[dict], repeats: int) -> tuple[float, float]:
    """(examples/s, matmul FLOPs of one training step on the first batch) for a preset."""
    model = build_backbone(preset).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    training_step(model, optimizer, batches[0])  # warm-up: allocations, oneDNN primitives
    counter = FlopCounterMode(display=False)
    with counter:
        training_step(model, optimizer, batches[0])
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        for batch in batches:
            training_step(model, optimizer, batch)
        best = max(best, BATCHES * BATCH_SIZE / (time.perf_counter() - start))
    return best, float(counter.get_total_flops())


def matmul_gflops(repeats: int, size: int = 2048) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = float("inf")
    for _ in range(max(repeats, 3)):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def run(args: argparse.Namespace) -> None:
    batches = load_batches(args.work_dir)
    frames = sum(int(b["num_frames"].sum()) for b in batches) / (BATCHES * BATCH_SIZE)
    print(
        f"{BATCHES} batches of {BATCH_SIZE} videos ({frames:.0f} valid of 300 frames on average), "
        f"{NUM_CLASSES} classes, {torch.get_num_threads()} threads"
    )
    matmul = matmul_gflops(args.repeats)  # measured again at the end: the best of both
    rates = {}
    for preset in PRESETS:
        rate, step_flops = examples_per_second(preset, batches, args.repeats)
        rates[preset] = rate
        step_time = BATCH_SIZE / rate
        print(
            f"  model={preset:<9} {rate:8.1f} examples/s  "
            f"({step_flops / 1e9:7.1f} GFLOP per step, {step_flops / step_time / 1e9:6.1f} GFLOP/s)"
        )
        if preset == "nextvlad":
            nextvlad_gflops = step_flops / step_time / 1e9
    matmul = max(matmul, matmul_gflops(args.repeats))
    print(f"  fp32 matmul {2048}^2: {matmul:.1f} GFLOP/s")
    _print_efficiency(nextvlad_gflops / matmul, torch.get_num_threads())
    threads = torch.get_num_threads()
    if threads > 1:  # the claims' jobs run one thread each, two at a time
        torch.set_num_threads(1)
        try:
            rate, step_flops = examples_per_second("nextvlad", batches, args.repeats)
            single = matmul_gflops(args.repeats)
            print(
                f"  one thread: model=nextvlad {rate:8.1f} examples/s, matmul {single:.1f} GFLOP/s"
            )
            _print_efficiency(step_flops * rate / BATCH_SIZE / 1e9 / single, 1)
        finally:
            torch.set_num_threads(threads)


def _print_efficiency(ratio: float, threads: int) -> None:
    print(
        f"  ratio NeXtVLAD training step vs matmul GFLOP/s, {threads} thread"
        f"{'s' if threads > 1 else ''}: {ratio:5.2f}  (target >= 0.6: "
        f"{'met' if ratio >= 0.6 else 'NOT met'})"
    )
