"""Backbones and their layers: shapes, masking, gradients, parameter counts of the papers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import OmegaConf

from vidistill.models import (
    DBoF,
    FrameMeanLogistic,
    NetVLAD,
    NeXtVLAD,
    build_backbone,
    count_parameters,
)
from vidistill.models.layers import MoEClassifier, pack, unpack

NUM_CLASSES = 12
SMALL = {
    "nextvlad": lambda: build_backbone("nextvlad", NUM_CLASSES, clusters=8, hidden_size=64),
    "netvlad": lambda: build_backbone(
        "netvlad", NUM_CLASSES, clusters=4, audio_clusters=2, hidden_size=32
    ),
    "dbof": lambda: build_backbone("dbof", NUM_CLASSES, cluster_size=64, hidden_size=32),
    "dbof_mean": lambda: build_backbone(
        "dbof", NUM_CLASSES, cluster_size=64, hidden_size=32, pooling="mean"
    ),
    "logistic": lambda: FrameMeanLogistic(NUM_CLASSES),
}


def batch(lengths: list[int], frames: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random dequantized-range frames [B, frames, 1152] with zero padding after each length."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(len(lengths), frames, 1152, generator=generator) * 4 - 2
    mask = torch.arange(frames) < torch.tensor(lengths)[:, None]
    return x * mask.unsqueeze(-1), mask


@pytest.mark.parametrize("name", SMALL)
def test_shapes_and_output_contract(name):
    model = SMALL[name]()
    x, mask = batch([5, 9, 2], 9)
    out = model(x, mask)
    assert out.logits.shape == (3, NUM_CLASSES)
    assert out.embedding.shape == (3, model.embedding_size)
    assert torch.isfinite(out.logits).all()


@pytest.mark.parametrize("name", SMALL)
@pytest.mark.parametrize("training", [True, False])
def test_padding_never_changes_outputs(name, training):
    """The same videos padded to 9 or to 20 frames give the same logits, in training mode (batch
    statistics from valid frames only) and in evaluation mode."""
    model = SMALL[name]().train(training)
    x, mask = batch([5, 9, 2, 7], 9)
    longer = torch.cat([x, torch.zeros(4, 11, 1152)], 1)
    longer_mask = torch.cat([mask, torch.zeros(4, 11, dtype=torch.bool)], 1)
    outputs = []
    for frames, valid in ((x, mask), (longer, longer_mask)):
        torch.manual_seed(3)  # same dropout draws: dropout acts on per-video tensors
        outputs.append(model(frames, valid).logits)
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-5, atol=1e-5)
    # garbage in the padded positions is ignored too
    noisy = longer + torch.randn_like(longer) * (~longer_mask).unsqueeze(-1)
    torch.manual_seed(3)
    torch.testing.assert_close(model(noisy, longer_mask).logits, outputs[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", SMALL)
def test_a_gradient_reaches_every_parameter(name):
    model = SMALL[name]()
    x, mask = batch([5, 9, 2, 7], 9)
    labels = (torch.rand(4, NUM_CLASSES) < 0.3).float()
    F.binary_cross_entropy_with_logits(model(x, mask).logits, labels).backward()
    for parameter_name, parameter in model.named_parameters():
        assert parameter.grad is not None, parameter_name
        assert parameter.grad.abs().sum() > 0, parameter_name


@pytest.mark.parametrize("name", SMALL)
def test_output_bias_starts_at_the_priors(name):
    model = SMALL[name]().eval()
    priors = torch.linspace(0.01, 0.2, NUM_CLASSES)
    with torch.no_grad():
        for parameter in model.classifier.parameters():
            if parameter.ndim == 2:
                parameter.zero_()  # representation-independent output: only the bias speaks
    model.initialize_output_bias(torch.logit(priors))
    x, mask = batch([3, 4], 4)
    torch.testing.assert_close(torch.sigmoid(model(x, mask).logits[0]), priors, atol=1e-5, rtol=0)


def test_nextvlad_paper_parameter_counts_match_the_papers():
    # ECCV 2018 NeXtVLAD paper / MOD paper: 88.89M at 3862 classes, 83.03M at 1000 (+-0.1%).
    assert count_parameters(build_backbone("nextvlad_paper", 3862)) == pytest.approx(
        88.89e6, rel=1e-3
    )
    assert count_parameters(build_backbone("nextvlad_paper", 1000)) == pytest.approx(
        83.03e6, rel=1e-3
    )
    model = build_backbone("nextvlad_paper", 3862)
    # the breakdown of the MOD paper's appendix: video 4.31M, audio 0.11M, hidden 75.50M
    assert count_parameters(model.video) == pytest.approx(4.31e6, abs=5e3)
    assert count_parameters(model.audio) == pytest.approx(0.11e6, abs=5e3)
    assert count_parameters(model.hidden) == pytest.approx(75.50e6, abs=5e3)
    assert count_parameters(model.gating) == pytest.approx(1.05e6, abs=5e3)
    assert count_parameters(model.classifier) == pytest.approx(7.91e6, abs=5e3)


def test_dbof_paper_is_the_mod_papers_16m_baseline():
    """MOD paper, Table 1: "DBoF Baseline 16M", 2048 clusters, hidden 1024, MoE of 5 experts,
    at the segment task's 1000 classes; the preset file builds the same model."""
    model = build_backbone("dbof_paper", 1000)
    assert count_parameters(model) == pytest.approx(16e6, rel=0.03)
    assert model.project.out_features == 2048 and model.hidden.out_features == 1024
    preset = OmegaConf.load(Path(__file__).parents[2] / "conf" / "model" / "dbof_paper.yaml")
    preset.backbone.num_classes = 1000
    assert count_parameters(instantiate(preset.backbone)) == count_parameters(model)


def test_nextvlad_pooling_matches_a_direct_loop():
    """The batched NeXtVLAD aggregation equals the per-frame, per-group definition."""
    model = NeXtVLAD(NUM_CLASSES, clusters=4, groups=2, expansion=2, hidden_size=16).eval()
    pooling = model.video
    x, mask = batch([3, 5], 5)
    rgb = x[..., :1024]
    got = pooling(pack(rgb, mask), mask)
    g, k, d = pooling.groups, pooling.clusters, pooling.group_size
    expected = []
    for video in range(2):
        vlad = torch.zeros(d, k)
        for t in range(int(mask[video].sum())):
            xd = pooling.expand(rgb[video, t])
            attention = torch.sigmoid(pooling.attention(xd))
            logits = pooling.assign_bn(pooling.assign(xd)[None])[0].view(g, k)
            for group in range(g):
                a = torch.softmax(logits[group], 0) * attention[group]
                residual = xd[group * d : (group + 1) * d, None] - pooling.centers[0]
                vlad += residual * a[None]
        expected.append(F.normalize(vlad, dim=0).reshape(-1))
    expected = pooling.output_bn(torch.stack(expected))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_netvlad_pooling_matches_a_direct_loop():
    model = NetVLAD(NUM_CLASSES, clusters=3, audio_clusters=2, hidden_size=8).eval()
    pooling = model.audio
    x, mask = batch([2, 4], 4)
    audio = x[..., 1024:]
    got = pooling(pack(audio, mask), mask)
    expected = []
    for video in range(2):
        vlad = torch.zeros(128, 2)
        for t in range(int(mask[video].sum())):
            a = torch.softmax(pooling.assign_bn(pooling.assign(audio[video, t])[None])[0], 0)
            vlad += (audio[video, t, :, None] - pooling.centers[0]) * a[None]
        expected.append(F.normalize(F.normalize(vlad, dim=0).reshape(-1), dim=0))
    torch.testing.assert_close(got, torch.stack(expected), rtol=1e-4, atol=1e-6)


def test_moe_logits_are_the_log_odds_of_the_mixture_probability():
    moe = MoEClassifier(6, 5, num_mixtures=3)
    h = torch.randn(4, 6) * 3
    gates = torch.softmax(moe.gates(h).view(4, 5, 4), -1)[..., :3]
    p = (gates * torch.sigmoid(moe.experts(h).view(4, 5, 3))).sum(-1)
    torch.testing.assert_close(torch.sigmoid(moe(h)), p, rtol=1e-5, atol=1e-6)
    # extreme inputs stay finite (the log-space form never takes log(0))
    assert torch.isfinite(moe(h * 1e4)).all()


def test_pack_and_unpack_are_inverse():
    x, mask = batch([2, 0, 3], 3)
    packed = pack(x, mask)
    assert packed.shape == (5, 1152)
    torch.testing.assert_close(unpack(packed, mask), x)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="divisible"):
        NeXtVLAD(NUM_CLASSES, groups=3, expansion=1)
    with pytest.raises(ValueError, match="unknown classifier"):
        NeXtVLAD(NUM_CLASSES, classifier="svm")
    with pytest.raises(ValueError, match="pooling"):
        DBoF(NUM_CLASSES, pooling="median")
