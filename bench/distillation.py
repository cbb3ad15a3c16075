"""What distillation costs per training step, as ratios measured in one run.

* ``model=mix`` (3 NeXtVLADs) and ``model=mod`` (a tree of 4 x 3) with online distillation (BCE on
  every node, KL at every level) against 3 and 12 training steps of one of their NeXtVLADs alone:
  what running the leaves together saves, net of the gates, the mixing and the distillation
  terms. Each tree is also timed member by member (every mixture placed on the CPU: the
  model-parallel path, which runs members one by one), in the same interleaved passes.
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
from vidistill.models import Mixture, place
from vidistill.models.mixture import leaves

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
    return interleaved_seconds_per_step({"model": (model, objective, batches)}, repeats)["model"]


def interleaved_seconds_per_step(
    runs: dict[str, tuple[torch.nn.Module, Callable, list[dict]]], repeats: int
) -> dict[str, float]:
    """Best time of one training step of each named (model, objective, batches); the runs take
    turns pass after pass, so a drift in the machine's load touches them alike."""
    steps = {name: _training_step(model, objective) for name, (model, objective, _) in runs.items()}
    for name, (_, _, batches) in runs.items():
        steps[name](batches[0])  # warm-up: allocations, oneDNN primitives
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeats):
        for name, (_, _, batches) in runs.items():
            start = time.perf_counter()
            for batch in batches:
                steps[name](batch)
            best[name] = min(best[name], (time.perf_counter() - start) / len(batches))
    return best


def _training_step(model: torch.nn.Module, objective: Callable) -> Callable[[dict], None]:
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

    return step


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
    """A mixture's training step against its members' steps alone, at one torch thread (how
    the claims' jobs run, two at a time) and at all of them."""
    full = [teacher_view(b) for b in batches]
    threads = torch.get_num_threads()
    for count in sorted({1, threads}):
        torch.set_num_threads(count)
        try:
            for preset, target in (("mix", 0.9), ("mod", 0.8)):
                _mixture_ratio(preset, target, full, repeats, count)
        finally:
            torch.set_num_threads(threads)


def _mixture_ratio(
    preset: str, target: float, batches: list[dict], repeats: int, threads: int
) -> None:
    cfg = compose_run([f"model={preset}", "distill=online", "T=20"])
    tree = instantiate(cfg.model.backbone)
    members = sum(1 for _ in leaves(tree))
    times = interleaved_seconds_per_step(
        {
            "together": (tree, instantiate(cfg.distill), batches),
            "one by one": (
                one_by_one(instantiate(cfg.model.backbone)),
                instantiate(cfg.distill),
                batches,
            ),
            "member": (instantiate(cfg.model.backbone.leaf)(), LabelLoss(), batches),
        },
        repeats,
    )
    alone = members * times["member"]
    ratio = times["together"] / alone
    print(
        f"  model={preset} step ({members} NeXtVLADs, online distillation T=20, {threads} "
        f"thread{'s' if threads > 1 else ''}): leaves together {times['together']:.3f} s, "
        f"member by member {times['one by one']:.3f} s; one member alone (BCE) "
        f"{times['member']:.3f} s"
    )
    print(
        f"  ratio {preset} step / ({members} x member step), {threads} thread"
        f"{'s' if threads > 1 else ''}: together {ratio:5.2f} (target <= {target}: "
        f"{'met' if ratio <= target else 'NOT met'}), member by member "
        f"{times['one by one'] / alone:5.2f}"
    )


def one_by_one(tree: Mixture) -> Mixture:
    """``tree`` with every mixture placed on the CPU: the model-parallel path, on which each
    mixture runs its members one after the other (the computation before leaves ran together)."""
    for member in tree.members:
        if isinstance(member, Mixture):
            one_by_one(member)
    return place(tree, ["cpu"] * len(tree.members))


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
