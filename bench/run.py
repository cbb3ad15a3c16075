"""vidistill benchmarks: ``make bench`` (or ``python bench/run.py [section ...]``).

Every figure is a ratio between measurements taken in the same run on the same data, because
these machines are shared and absolute timings drift by up to 2x between runs. Each section runs
in a process of its own, set up as the entry point it measures.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import data_pipeline  # noqa: E402
import distillation  # noqa: E402
import training  # noqa: E402

import inference  # noqa: E402
import localization  # noqa: E402
from vidistill.atomic import atomic_write  # noqa: E402
from vidistill.configs import register_configs  # noqa: E402
from vidistill.host_memory import keep_freed_memory  # noqa: E402

SECTIONS: dict[str, Callable[[argparse.Namespace], None]] = {
    "data": data_pipeline.run,
    "training": training.run,
    "distillation": distillation.run,
    "localization": localization.run,
    "inference": inference.run,
}
# Sections standing for train.py, which keeps freed host memory for reuse
# (vidistill.host_memory); the others stand for entry points that leave malloc as it is.
KEEPS_FREED_MEMORY = ("training", "distillation")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("sections", nargs="*", choices=[*SECTIONS, []], help="default: all")
    parser.add_argument(
        "--work-dir", default="data/bench", help="where benchmark data is generated"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed passes per measurement (best is kept)"
    )
    parser.add_argument(
        "--save",
        type=Path,
        help="also write each section's output to SAVE/<NN>-<commit>/<section>.txt, one numbered "
        "directory per run (the README's benchmark section shows every run in results/bench/)",
    )
    parser.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.in_process:  # one section, in the process its parent started for it
        _run_section(args.sections[0], args)
        return
    target = _run_directory(args.save) if args.save else None
    for name in args.sections or SECTIONS:
        print(f"\n== {name} ==", flush=True)
        output = _section_in_own_process(name, args)
        if target is not None:
            target.mkdir(parents=True, exist_ok=True)
            atomic_write(target / f"{name}.txt", _provenance() + output)


def _run_section(name: str, args: argparse.Namespace) -> None:
    register_configs()  # the sections compose conf/ as train.py does
    if name in KEEPS_FREED_MEMORY:
        keep_freed_memory()
    start = time.perf_counter()
    SECTIONS[name](args)
    print(f"({name}: {time.perf_counter() - start:.0f} s)", flush=True)


def _section_in_own_process(name: str, args: argparse.Namespace) -> str:
    """Runs section ``name`` in a fresh interpreter set up as the entry point it stands for
    (see :data:`KEEPS_FREED_MEMORY`), so that no section inherits another's heap or threads;
    echoes its output and returns it."""
    command = [sys.executable, __file__, name, "--in-process"]
    command += ["--work-dir", args.work_dir, "--repeats", str(args.repeats)]
    lines = []
    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}  # its lines as they come
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=environment) as process:
        for line in process.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            lines.append(line)
    if process.returncode:
        raise SystemExit(f"bench section {name} failed (exit status {process.returncode})")
    return "".join(lines)


def _run_directory(root: Path) -> Path:
    """``root/<NN>-<commit>``: the next run's number after the runs already saved there."""
    from vidistill.runs.training import git_commit

    numbers = [int(p.name.split("-")[0]) for p in root.glob("[0-9]*-*") if p.is_dir()]
    commit = (git_commit() or "unknown")[:7]
    return root / f"{max(numbers, default=0) + 1:02d}-{commit}"


def _provenance() -> str:
    """Where a saved section's numbers come from: the commit, the machine, the torch threads."""
    import platform

    import torch

    from vidistill.runs.training import git_commit

    commit = (git_commit() or "unknown")[:7]
    return (
        f"commit {commit}; {platform.machine()}, {os.cpu_count()} cores, "
        f"{torch.get_num_threads()} torch threads\n"
    )


if __name__ == "__main__":
    main()
