"""Command line: ``python -m vidistill.data.synthetic --out DIR [--seed N] [--num-train N] ...``,
one flag per :class:`~vidistill.data.synthetic.config.SyntheticConfig` knob. ``--out`` may be an
fsspec URL: the set is generated locally, then uploaded."""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import typing
from pathlib import Path

from vidistill.data.shards import is_url, upload_directory
from vidistill.data.synthetic.cache import read_metadata
from vidistill.data.synthetic.config import SyntheticConfig
from vidistill.data.synthetic.writer import generate


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m vidistill.data.synthetic",
        description="Generate the synthetic YouTube-8M dataset (official TFRecord format).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--out",
        required=True,
        help="directory to write (replaced if it exists), or an fsspec URL (gs://, s3://, ...) "
        "to upload the shards to",
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="writer processes (default: auto)"
    )
    parser.add_argument("--no-progress", action="store_true", help="do not show a progress bar")
    hints = typing.get_type_hints(SyntheticConfig)
    for f in dataclasses.fields(SyntheticConfig):
        flag = "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default)
        else:
            parser.add_argument(flag, type=kind, default=f.default, metavar=kind.__name__.upper())
    return parser


def main(argv: list[str] | None = None) -> Path | str:
    """CLI entry point: ``python -m vidistill.data.synthetic --out DIR [--seed N] ...``."""
    args = _parser().parse_args(argv)
    knobs = {f.name: getattr(args, f.name) for f in dataclasses.fields(SyntheticConfig)}
    try:
        config = SyntheticConfig(**knobs)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    if is_url(args.out):  # written here, then uploaded with synthetic.json last
        with tempfile.TemporaryDirectory() as local:
            directory = generate(local, config, progress=not args.no_progress, workers=args.workers)
            meta = read_metadata(directory)
            upload_directory(directory, args.out, last="synthetic.json")
        out = args.out
    else:
        out = generate(args.out, config, progress=not args.no_progress, workers=args.workers)
        meta = read_metadata(out)
    print(f"wrote synthetic YT8M dataset to {out} (config hash {meta['config_hash']})")
    for split, entry in meta["splits"].items():
        extra = f", {entry['rated_segments']} rated segments" if "rated_segments" in entry else ""
        print(
            f"  {split:17s} {entry['videos']:6d} videos {entry['frames']:9d} frames in {entry['shards']} shards{extra}"
        )
    return out
