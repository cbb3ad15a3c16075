"""A run's cost per video: a learned selector's multiply-adds and the bytes it dequantizes."""

from __future__ import annotations

from vidistill.analysis.costs import bytes_dequantized, flops_of
from vidistill.models.selection import SegmentFrameSelector

BACKBONE = {
    "_target_": "vidistill.models.NeXtVLAD",
    "num_classes": 20,
    "clusters": 4,
    "groups": 4,
    "expansion": 1,
    "hidden_size": 16,
}
SELECTOR = {"_target_": "vidistill.models.selection.SegmentFrameSelector", "k": 10, "hidden": 16}


def config(sampler: str, selector: dict | None = None) -> dict:
    model = {"backbone": BACKBONE, **({"selector": selector} if selector else {})}
    return {"model": model, "data": {"sampler": sampler, "k": 10, "max_frames": 300}}


def test_a_selector_student_costs_its_k_frames_plus_scoring_every_frame():
    uniform, learned = flops_of(config("uniform")), flops_of(config("learned", SELECTOR))
    scoring = SegmentFrameSelector(10, hidden=16).flops_per_video(300)
    assert scoring == 300 * (128 * 16 + 3 * 16 * 16 + 16)  # embedding, 3-frame convolution, head
    assert learned["flops_selector"] == scoring
    assert learned["flops_total"] == uniform["flops_total"] + scoring
    assert learned["flops_paper"] == uniform["flops_paper"]  # the papers count rgb frame layers
    all_frames = flops_of(config("all"))
    assert all_frames["flops_total"] > learned["flops_total"]


def test_bytes_dequantized_per_video():
    assert bytes_dequantized(config("uniform")) == 10 * 1152
    assert bytes_dequantized(config("all")) == 300 * 1152
    assert bytes_dequantized(config("learned", SELECTOR)) == 300 * 128 + 10 * 1024
    segment = config("all")
    segment["data"]["mode"] = "segment"
    assert bytes_dequantized(segment) is None
