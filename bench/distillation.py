"""What distillation costs per training step, as ratios measured in one run.

* ``model=mod`` (a tree of 4 x 3 NeXtVLADs with online distillation: BCE on every node, KL at
  every level) against 12 training steps of one of its NeXtVLADs alone: the overhead of the
  gates, the mixing and the distillation terms over the members' own work.
* The serial student (k frames; L_rep + L_pred + L_CE, with the frozen teacher's forward pass on
  all frames) against the teacher's own training step, and the student's inference (k frames)
  against the teacher's (all frames), the saving the fewer-frames paper is after.

Models are the CPU presets; batches are real synthetic YT8M videos decoded once and held in memory,
so only the models are timed.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from training import BATCH_SIZE, CONFIG_DIR, NUM_CLASSES, load_batches

from vidistill.data import FrameSelection
from vidistill.distill import LabelLoss

BATCHES = 3
K = 30


def compose_run(overrides: list[str]):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=[f"num_classes={NUM_CLASSES}", *overrides])


def teacher_view(batch: dict) -> dict:
    """The batch as the teacher (or a plain all-frames model) sees it."""
    return {
        **batch,
        "frames": batch["teacher_frames"],
        "mask": batch["teacher_mask"],
        "num_frames": batch["teacher_num_frames"],
    }


def seconds_per_step(
    model: torch.nn.Module, objective: Callable, batches: list[dict], repeats: int
) -> float:
    """Best time of one training step (forward, objective, backward, Adam) over the batches."""
    model.train()
    parameters = [
        p
        for m in (model, objective)
        if isinstance(m, torch.nn.Module)
        for p in m.parameters()
        if p.requires_grad
    ]
    optimizer = torch.optim.Adam(parameters, lr=1e-4)

    def step(batch: dict) -> None:
        optimizer.zero_grad(set_to_none=True)
        sum(objective(model(batch["frames"], batch["mask"]), batch).values()).backward()
        optimizer.step()

    step(batches[0])  # warm-up: allocations, oneDNN primitives
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for batch in batches:
            step(batch)
        best = min(best, (time.perf_counter() - start) / len(batches))
    return best


@torch.no_grad()
def seconds_per_inference(model: torch.nn.Module, batches: list[dict], repeats: int) -> float:
    model.eval()
    model(batches[0]["frames"], batches[0]["mask"])
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for batch in batches:
            model(batch["frames"], batch["mask"])
        best = min(best, (time.perf_counter() - start) / len(batches))
    return best


def mixture_overhead(batches: list[dict], repeats: int) -> None:
    cfg = compose_run(["model=mod", "distill=online", "T=20"])
    tree = instantiate(cfg.model.backbone)
    leaf = instantiate(cfg.model.backbone.leaf)()
    full = [teacher_view(b) for b in batches]
    tree_step = seconds_per_step(tree, instantiate(cfg.distill), full, repeats)
    leaf_step = seconds_per_step(leaf, LabelLoss(), full, repeats)
    members = len(list(tree.members)) * len(list(tree.members[0].members))
    print(f"  model=mod step ({members} NeXtVLADs, online distillation T=20): {tree_step:.3f} s")
    print(f"  one member alone (BCE):                                  {leaf_step:.3f} s")
    print(f"  ratio mod step / ({members} x member step): {tree_step / (members * leaf_step):5.2f}")


def student_against_teacher(batches: list[dict], repeats: int) -> None:
    cfg = compose_run(["model=nextvlad", "distill=serial", f"k={K}"])
    teacher = instantiate(cfg.model.backbone)
    student = instantiate(cfg.model.backbone)
    objective = instantiate(cfg.distill, teacher=teacher)
    objective.attach(student)
    full = [teacher_view(b) for b in batches]
    teacher_step = seconds_per_step(instantiate(cfg.model.backbone), LabelLoss(), full, repeats)
    student_step = seconds_per_step(student, objective, batches, repeats)
    teacher_inference = seconds_per_inference(teacher, full, repeats)
    student_inference = seconds_per_inference(student, batches, repeats)
    frames = sum(int(b["teacher_num_frames"].sum()) for b in batches) / (BATCHES * BATCH_SIZE)
    print(
        f"  NeXtVLAD teacher on all frames ({frames:.0f} valid on average) vs serial student on "
        f"Uniform-{K} (L_rep + L_pred + L_CE, frozen teacher's forward included):"
    )
    print(
        f"    training step: teacher {teacher_step:.3f} s, student {student_step:.3f} s, "
        f"ratio {student_step / teacher_step:5.2f}"
    )
    print(
        f"    inference:     teacher {teacher_inference:.3f} s, student {student_inference:.3f} s, "
        f"ratio {student_inference / teacher_inference:5.2f}"
    )


def run(args: argparse.Namespace) -> None:
    # Uniform-K student frames, with the teacher's view (all frames) of the same videos.
    batches = load_batches(
        args.work_dir,
        BATCHES,
        frames=FrameSelection("uniform", K),
        teacher_frames=FrameSelection("all"),
    )
    print(
        f"{BATCHES} batches of {BATCH_SIZE} videos, {NUM_CLASSES} classes, "
        f"{torch.get_num_threads()} threads"
    )
    mixture_overhead(batches, args.repeats)
    student_against_teacher(batches, args.repeats)
