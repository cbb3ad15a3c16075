"""vidistill benchmarks: ``make bench`` (or ``python bench/run.py [section ...]``).

Every figure is a ratio between measurements taken in the same run on the same data, because
these machines are shared and absolute timings drift by up to 2x between runs.
"""

from __future__ import annotations

import argparse
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
    args = parser.parse_args()
    register_configs()  # the sections compose conf/ as train.py does
    for name in args.sections or SECTIONS:
        print(f"\n== {name} ==", flush=True)
        start = time.perf_counter()
        SECTIONS[name](args)
        print(f"({name}: {time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
