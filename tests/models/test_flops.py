"""FLOPs and parameter counts: the papers' figures, recurrent layers, the flops.py CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from vidistill.models import (
    HRNN,
    FrameMeanLogistic,
    build_backbone,
)
from vidistill.models.base import BackboneOutput
from vidistill.models.flops import count, recurrent_macs

ROOT = Path(__file__).resolve().parents[2]


def test_nextvlad_paper_matches_table_6():
    model = build_backbone("nextvlad_paper", 3862)
    full, k30 = count(model, 300), count(model, 30)
    assert full["params"] == 88_889_378
    assert full["flops_paper"] == 1_336_934_400 == 300 * 4_456_448  # paper: 1.337 G
    assert k30["flops_paper"] == 133_693_440  # paper: 0.134 G
    # Every layer: rgb 4,472,832 + audio 115,712 per frame, head 84,455,424 per video.
    assert full["flops_total"] == 300 * (4_472_832 + 115_712) + 84_455_424


def test_hrnn_paper_near_table_3():
    teacher, student = (
        build_backbone("hrnn_paper", 3862),
        build_backbone("hrnn_paper", 3862, num_blocks=5),
    )
    assert count(teacher, 300)["flops_paper"] == 300 * 16_777_216
    assert count(teacher, 300)["flops_paper"] == pytest.approx(5.058e9, rel=0.01)
    assert count(student, 30)["flops_paper"] == pytest.approx(0.520e9, rel=0.04)
    assert count(student, 10)["flops_paper"] == pytest.approx(0.167e9, rel=0.01)


def test_hrnn_total_counts_both_lstms_and_the_head():
    model = build_backbone(
        "hrnn", 20
    )  # 10 blocks, 2-layer LSTMs of 64 (lower) and 128 (upper) cells
    lower = 4 * 64 * (1152 + 64) + 4 * 64 * 128  # per frame
    upper = 4 * 128 * (256 + 128) + 4 * 128 * 256  # per block
    moe = 512 * 20 * 5
    assert count(model, 50)["flops_total"] == 50 * lower + 10 * upper + moe
    assert count(model, 4)["flops_total"] == 4 * lower + 4 * upper + moe  # 4 non-empty blocks


class _LSTMOnly(nn.Module):
    """A backbone that is one LSTM, run unpacked or packed."""

    def __init__(self, packed: bool):
        super().__init__()
        self.packed = packed
        self.lstm = nn.LSTM(1152, 64, 2, batch_first=True)

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> BackboneOutput:
        x = frames
        if self.packed:
            x = pack_padded_sequence(frames, mask.sum(1), batch_first=True, enforce_sorted=False)
        _, (h, _) = self.lstm(x)
        return BackboneOutput(logits=h[-1], embedding=h[-1])


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("mkldnn", [True, False])
def test_lstm_counted_once_whatever_the_code_path(packed, mkldnn, monkeypatch):
    # Unpacked CPU LSTMs run in oneDNN, which FlopCounterMode counts as 0; packed ones (or with
    # oneDNN off) decompose into matmuls it does count. Either way: the analytic count, once.
    monkeypatch.setattr(torch.backends.mkldnn, "enabled", mkldnn)
    expected = 7 * (4 * 64 * (1152 + 64) + 4 * 64 * 128)
    assert count(_LSTMOnly(packed), 7)["flops_total"] == expected > 0


def test_recurrent_macs_of_cells_and_bidirectional_layers():
    assert recurrent_macs(nn.LSTMCell(10, 20), torch.zeros(3, 10)) == 3 * 4 * 20 * 30
    assert recurrent_macs(nn.GRU(10, 20, bidirectional=True), torch.zeros(5, 2, 10)) == (
        10 * 2 * 3 * 20 * 30
    )
    lstm = nn.LSTM(10, 20, 2, batch_first=True)
    packed = pack_padded_sequence(torch.zeros(2, 4, 10), torch.tensor([4, 1]), batch_first=True)
    assert recurrent_macs(lstm, packed) == 5 * (4 * 20 * 30 + 4 * 20 * 40)


@pytest.mark.parametrize(
    "model",
    [
        FrameMeanLogistic(20),
        build_backbone("nextvlad", 20),
        build_backbone("netvlad", 20),
        build_backbone("dbof", 20),
        build_backbone("hrnn", 20),
        HRNN(20, num_blocks=5, lower_size=16, upper_size=16),
    ],
    ids=lambda model: type(model).__name__,
)
def test_total_covers_paper_count_and_training_mode_is_restored(model):
    model.train()
    result = count(model, 30)
    assert result["flops_total"] >= result["flops_paper"] >= 0
    assert result["flops_total"] > 0
    assert model.training


def test_unknown_family_has_no_paper_count():
    result = count(_LSTMOnly(packed=False), 3)
    assert result["flops_paper"] is None and result["params"] > 0


def test_cli_prints_json_and_writes_nothing(tmp_path):
    run = subprocess.run(
        [sys.executable, str(ROOT / "flops.py"), "model=hrnn_paper", "k=30", "format=json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(run.stdout)
    assert result == {
        "frames": 30,
        "params": 125_795_884,
        "flops_paper": 30 * 16_777_216,
        # 20 blocks of 1-2 frames: the upper LSTM runs 20 steps.
        "flops_total": 30 * 17_301_504 + 20 * 29_360_128 + 4096 * 3862 * 5,
    }
    assert list(tmp_path.iterdir()) == []
