"""vidistill benchmarks: ``make bench`` (or ``python bench/run.py [section ...]``).

Every figure is a ratio between measurements taken in the same run on the same data, because
these machines are shared and absolute timings drift by up to 2x between runs.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
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

SECTIONS: dict[str, Callable[[argparse.Namespace], None]] = {
    "data": data_pipeline.run,
    "training": training.run,
    "distillation": distillation.run,
    "localization": localization.run,
    "inference": inference.run,
}


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
    args = parser.parse_args()
    register_configs()  # the sections compose conf/ as train.py does
    target = _run_directory(args.save) if args.save else None
    for name in args.sections or SECTIONS:
        print(f"\n== {name} ==", flush=True)
        output = io.StringIO()
        with contextlib.redirect_stdout(_Tee(sys.stdout, output)):
            start = time.perf_counter()
            SECTIONS[name](args)
            print(f"({name}: {time.perf_counter() - start:.0f} s)")
        if target is not None:
            target.mkdir(parents=True, exist_ok=True)
            atomic_write(target / f"{name}.txt", _provenance() + output.getvalue())


class _Tee(io.TextIOBase):
    """Writes to several streams: the terminal and the section's saved copy."""

    def __init__(self, *streams):
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()


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
