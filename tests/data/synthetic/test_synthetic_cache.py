"""Cached synthetic datasets: reuse, regeneration on mismatch, concurrent callers."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

from synthetic_tiny import files_of, tiny, tree_bytes

from vidistill.data import read_records
from vidistill.data.synthetic import config_hash, dataset_dir, ensure_dataset, sample_video


def test_ensure_dataset_caches_and_regenerates_on_mismatch(tmp_path):
    config = tiny(num_train=3)
    path = ensure_dataset(tmp_path, config, progress=False)
    assert path == dataset_dir(tmp_path, config) and path.name == f"synthetic-{config_hash(config)}"
    stamps = {p: p.stat().st_mtime_ns for p in path.rglob("*")}
    assert ensure_dataset(tmp_path, config, progress=False) == path
    assert {p: p.stat().st_mtime_ns for p in path.rglob("*")} == stamps

    other = ensure_dataset(
        tmp_path, dataclasses.replace(config, label_drop_rate=0.3), progress=False
    )
    assert other != path and other.exists()

    meta = json.loads((path / "synthetic.json").read_text())
    meta["config"]["frame_noise"] = 9.0  # as if written by another config: must be regenerated
    (path / "synthetic.json").write_text(json.dumps(meta))
    assert ensure_dataset(tmp_path, config, progress=False) == path
    assert (
        json.loads((path / "synthetic.json").read_text())["config"]["frame_noise"]
        == config.frame_noise
    )


def test_ensure_dataset_is_safe_for_concurrent_processes(tmp_path):
    """Two processes released together: exactly one generates, both get the complete dataset."""
    config = tiny(num_train=300)
    script = textwrap.dedent(
        f"""
        import logging, sys, time
        from pathlib import Path
        logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
        from vidistill.data.synthetic import SyntheticConfig, ensure_dataset
        config = SyntheticConfig(**{dataclasses.asdict(config)!r})
        barrier, me = Path(sys.argv[2]), sys.argv[3]
        (barrier / me).touch()
        while len(list(barrier.iterdir())) < 2:
            time.sleep(0.001)
        print("RESULT", ensure_dataset(sys.argv[1], config, progress=False))
        """
    )
    root, barrier = tmp_path / "root", tmp_path / "barrier"
    barrier.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(root), str(barrier), str(i)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(2)
    ]
    outputs = [run.communicate(timeout=120)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0]
    assert sum(o.count("generating synthetic YT8M dataset") for o in outputs) == 1
    results = [
        line.split(" ", 1)[1] for o in outputs for line in o.splitlines() if "RESULT" in line
    ]
    target = dataset_dir(root, config)
    assert results == [str(target)] * 2
    assert sorted(p.name for p in root.iterdir()) == [target.name, f"{target.name}.lock"]
    records = [r for f in files_of("train", target)[0] for r in read_records(str(f))]
    assert [r.id for r in records] == [sample_video(config, "train", i).id for i in range(300)]


def test_a_generation_killed_midway_is_regenerated_cleanly(tmp_path):
    """SIGKILL while the shards are being written (as a preempted job dies): nothing that looks
    like the dataset is left, the next call regenerates it, removes the dead run's temporary
    directory, and writes the same bytes as an uninterrupted generation."""
    config = tiny(num_train=2000)
    script = textwrap.dedent(
        f"""
        import dataclasses
        from vidistill.data.synthetic import SyntheticConfig, ensure_dataset
        ensure_dataset({str(tmp_path / "root")!r}, SyntheticConfig(**{dataclasses.asdict(config)!r}), progress=False)
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    run = subprocess.Popen([sys.executable, "-c", script], env=env)
    target = dataset_dir(tmp_path / "root", config)
    deadline = time.monotonic() + 120
    while not list(target.parent.glob(f".{target.name}.tmp-*/frame/*")):
        assert run.poll() is None, "the generation ended before it could be killed"
        assert time.monotonic() < deadline, "no shard was started within 2 minutes"
        time.sleep(0.01)
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=30)
    assert not target.exists()  # the set appears only when complete
    assert list(target.parent.glob(f".{target.name}.tmp-*"))  # the dead run's leftovers

    assert ensure_dataset(tmp_path / "root", config, progress=False) == target
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name, f"{target.name}.lock"]
    fresh = ensure_dataset(tmp_path / "fresh", config, progress=False)
    assert tree_bytes(target) == tree_bytes(fresh)
