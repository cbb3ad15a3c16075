"""``python -m vidistill.claims run|report|speed|picks <study> [--quick]`` and ``readme``."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from vidistill.claims.evidence import build_evidence, read_runs
from vidistill.claims.launch import PROJECT_ROOT, run_sweep
from vidistill.claims.picks import measure_picks, write_picks
from vidistill.claims.readme import write_readme
from vidistill.claims.speed import measure_speed, write_speed
from vidistill.claims.studies import STUDIES

log = logging.getLogger("vidistill.claims")


def study_directory(results: Path, study: str, quick: bool) -> Path:
    """``results/<study>``, or ``results/<study>/quick`` for the quick mode's runs and files."""
    return results / study / "quick" if quick else results / study


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vidistill.claims", description=__doc__)
    parser.add_argument("command", choices=["run", "report", "speed", "picks", "readme"])
    parser.add_argument("study", nargs="?", choices=sorted(STUDIES))
    parser.add_argument("--quick", action="store_true", help="one seed, the smallest arms")
    parser.add_argument(
        "--results", type=Path, default=PROJECT_ROOT / "results", help="evidence directory"
    )
    parser.add_argument("--readme", type=Path, default=PROJECT_ROOT / "README.md")
    parser.add_argument(
        "--sweeps", help="comma-separated sweeps to run (default: all of the study's)"
    )
    args = parser.parse_args(argv)
    # SIGTERM (a scheduler, `kill`) stops the running sweep's whole process group too.
    signal.signal(signal.SIGTERM, _interrupt)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.command == "readme":
        write_readme(args.readme, args.results)
        return 0
    if args.study is None:
        parser.error(f"{args.command} needs a study: {', '.join(sorted(STUDIES))}")
    study = STUDIES[args.study]
    directory = study_directory(args.results, study.name, args.quick)
    directory.mkdir(parents=True, exist_ok=True)
    failed = []
    if args.command == "speed":
        table = measure_speed(study, read_runs(study, directory), PROJECT_ROOT / "data/synthetic")
        log.info("measured speed written to %s", write_speed(table, directory))
    if args.command == "picks":
        table = measure_picks(read_runs(study, directory), PROJECT_ROOT / "data/synthetic")
        log.info("selectors' picks written to %s", write_picks(table, directory))
    if args.command == "run":
        chosen = args.sweeps.split(",") if args.sweeps else [s.name for s in study.sweeps]
        for sweep in (study.sweep(name) for name in chosen):
            if args.quick and sweep.quick is None:
                continue
            if run_sweep(study, sweep, directory, args.quick) != 0:
                failed.append(sweep.name)
                log.error("sweep %s had failed jobs: see %s", sweep.name, directory / "logs")
            build_evidence(study, directory, args.quick)  # after each sweep: evidence so far
    claims = build_evidence(study, directory, args.quick)
    print((directory / "claims.md").read_text())
    log.info("%s: %d claims, evidence in %s", study.name, len(claims), directory)
    return 1 if failed else 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


if __name__ == "__main__":
    sys.exit(main())
