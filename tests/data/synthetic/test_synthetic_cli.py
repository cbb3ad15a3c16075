"""The synthetic generator's command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from synthetic_tiny import TINY

from vidistill.data import read_records
from vidistill.data.synthetic import main


def test_cli_writes_a_dataset(tmp_path, capsys):
    out = tmp_path / "cli"
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]
    main(
        [
            *flags,
            "--out",
            str(out),
            "--seed",
            "7",
            "--num-train",
            "2",
            "--noisy-eval-labels",
            "--no-progress",
        ]
    )
    printed = capsys.readouterr().out
    assert str(out) in printed and "train" in printed
    meta = json.loads((out / "synthetic.json").read_text())
    assert meta["config"]["seed"] == 7 and meta["config"]["num_train"] == 2
    assert meta["config"]["noisy_eval_labels"] is True
    assert len(list(read_records(str(out / "frame" / "train0000.tfrecord")))) == 1
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "bad"), "--label-drop-rate", "1.5", "--no-progress"])
    assert not (tmp_path / "bad").exists()


def test_the_package_runs_as_a_module():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    run = subprocess.run(
        [sys.executable, "-m", "vidistill.data.synthetic", "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "python -m vidistill.data.synthetic" in run.stdout and "--num-train" in run.stdout
    assert not run.stderr


def test_cli_uploads_to_a_url(capsys):
    """``--out`` an fsspec URL: the shards land there (synthetic.json last) and read back."""
    import fsspec

    from vidistill.data import YT8MDataset, expand_files

    flags = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]
    url = "memory://vidistill-cli/synthetic"
    try:
        main([*flags, "--out", url, "--num-train", "3", "--no-progress"])
        assert url in capsys.readouterr().out
        fs = fsspec.filesystem("memory")
        meta = json.loads(fs.cat(f"{url}/synthetic.json"))
        files = expand_files(f"{url}/frame/train*.tfrecord")
        assert len(files) == meta["splits"]["train"]["shards"]
        dataset = YT8MDataset(files, meta["config"]["num_classes"], batch_size=2)
        assert sum(len(batch["ids"]) for batch in dataset) == 3
    finally:
        fsspec.filesystem("memory").rm("/vidistill-cli", recursive=True)
