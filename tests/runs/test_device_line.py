"""What a run says before it trains (its device, precision and run directory), as worded by
:mod:`vidistill.runs.builders`; ``tests/test_makefile.py`` checks ``make train`` prints it."""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from vidistill.runs.builders import describe_device, display_path


def test_the_device_line_names_devices_and_precision_and_an_idle_gpu(monkeypatch):
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        precision="bf16-mixed",
        logger=False,
        enable_checkpointing=False,
    )
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert describe_device(trainer) == "cpu (1 device, precision bf16-mixed)"
    # The default trainer is trainer=cpu: on a machine with a GPU, the line says how to use it.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert describe_device(trainer).endswith("[a CUDA GPU is available: trainer=gpu trains on it]")


def test_run_directories_are_shown_as_typed_below_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert display_path(tmp_path / "logs" / "train" / "runs" / "x") == "logs/train/runs/x"
    assert display_path("logs/train/runs/x") == "logs/train/runs/x"
    assert display_path(tmp_path.parent / "elsewhere") == str(tmp_path.parent / "elsewhere")
