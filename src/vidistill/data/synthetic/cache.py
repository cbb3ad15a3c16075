"""Cached synthetic datasets: ``root/<name>-<config hash>``, generated once and reused while its
``synthetic.json`` matches the config."""

from __future__ import annotations

import fcntl
import json
import logging
import shutil
from pathlib import Path

from vidistill.data.synthetic.config import FORMAT_VERSION, SyntheticConfig, config_hash
from vidistill.data.synthetic.writer import generate

log = logging.getLogger(__name__)


def read_metadata(directory: str | Path) -> dict | None:
    """The parsed ``synthetic.json`` of a generated dataset, or ``None`` if absent/unreadable."""
    try:
        return json.loads((Path(directory) / "synthetic.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def matches(directory: str | Path, config: SyntheticConfig) -> bool:
    """Whether ``directory`` holds a complete dataset generated from ``config``."""
    meta = read_metadata(directory)
    return (
        meta is not None
        and meta.get("format_version") == FORMAT_VERSION
        and meta.get("config") == json.loads(json.dumps(config.to_dict()))
    )


def dataset_dir(root: str | Path, config: SyntheticConfig | None = None) -> Path:
    """Where :func:`ensure_dataset` keeps the dataset of ``config``: ``root/<name>-<hash>``."""
    config = config or SyntheticConfig()
    return Path(root).absolute() / f"{config.name}-{config_hash(config)}"


def ensure_dataset(
    root: str | Path, config: SyntheticConfig | None = None, progress: bool = True
) -> Path:
    """Return ``root/<name>-<hash>``, generating it first if missing or not matching ``config``.

    Safe for concurrent callers (several ranks or jobs): one generates under an exclusive
    ``fcntl.flock`` on ``<target>.lock`` while the others wait, then find it complete.
    """
    config = config or SyntheticConfig()
    config.validate()
    target = dataset_dir(root, config)
    if matches(target, config):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(target.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not matches(target, config):
                _remove_leftovers(target)
                log.info("generating synthetic YT8M dataset in %s", target)
                generate(target, config, progress=progress)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return target


def _remove_leftovers(target: Path) -> None:
    """Delete what a generation of ``target`` that was killed left beside it: its temporary
    directory (the set is written there and renamed into place only when complete) and a
    replaced set not yet deleted. Called under the lock, so no live generation owns them."""
    for leftover in target.parent.glob(f".{target.name}.*"):
        if leftover.name.startswith((f".{target.name}.tmp-", f".{target.name}.old-")):
            log.info("removing %s, left by an interrupted generation", leftover)
            shutil.rmtree(leftover, ignore_errors=True)
