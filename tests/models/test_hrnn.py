"""H-RNN: blocks over valid frames, padding independence, batch independence, parameter counts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from vidistill.models import HRNN, build_backbone
from vidistill.models.base import count_parameters


def _tiny(**overrides) -> HRNN:
    """A fast H-RNN for the tests: 4 blocks, LSTMs of 8 cells on 12-d frames, 5 classes."""
    config = dict(num_blocks=4, lower_size=8, upper_size=6, feature_size=12)
    return HRNN(5, **{**config, **overrides})


def _batch(lengths: list[int], width: int, feature_size: int = 12, seed: int = 0):
    """Frames [B, width, D] with random garbage (not zeros) in the padding, and the mask."""
    generator = torch.Generator().manual_seed(seed)
    frames = torch.randn(len(lengths), width, feature_size, generator=generator)
    mask = torch.arange(width) < torch.tensor(lengths)[:, None]
    return frames, mask


def _reference(model: HRNN, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Blocks [b, 2 L H] and embedding [2 L H'] of one video [n, D] (all valid), step by step:
    block j holds frames floor(j n / b) .. floor((j + 1) n / b) - 1; the upper LSTM reads the
    non-empty blocks in order."""
    n, b = len(video), model.num_blocks
    x = F.normalize(video, dim=-1)

    def final_state(lstm, sequence):
        _, (h, c) = lstm(sequence.unsqueeze(0))
        return torch.stack([c, h], 1).flatten()  # (c_1, h_1, c_2, h_2)

    blocks, nonempty = [], []
    for j in range(b):
        start, end = j * n // b, (j + 1) * n // b
        if end > start:
            blocks.append(final_state(model.lower, x[start:end]))
            nonempty.append(blocks[-1])
        else:
            blocks.append(torch.zeros(2 * model.lower.num_layers * model.lower.hidden_size))
    return torch.stack(blocks), final_state(model.upper, torch.stack(nonempty))


def test_shapes():
    model = build_backbone("hrnn", 7).eval()
    frames, mask = _batch([40, 25, 3], 40, feature_size=1152)
    out = model(frames, mask)
    assert out.logits.shape == (3, 7)
    assert out.embedding.shape == (3, 4 * 128)
    assert out.intermediate["blocks"].shape == (3, 10, 4 * 64)


@pytest.mark.parametrize("n", [1, 3, 4, 9, 23])
def test_matches_step_by_step_reference(n):
    # n < b (1, 3) leaves empty blocks, which get zero states and are skipped by the upper LSTM.
    torch.manual_seed(0)
    model = _tiny().eval()
    frames, mask = _batch([n], n)
    out = model(frames, mask)
    with torch.no_grad():
        blocks, embedding = _reference(model, frames[0])
    torch.testing.assert_close(out.intermediate["blocks"][0], blocks)
    torch.testing.assert_close(out.embedding[0], embedding)
    empty = out.intermediate["blocks"][0].abs().sum(-1) == 0
    assert empty.sum().item() == max(model.num_blocks - n, 0)


def test_padding_never_changes_outputs_in_eval():
    torch.manual_seed(0)
    model = _tiny().eval()
    frames, mask = _batch([17], 17)
    padded, padded_mask = _batch([17], 60, seed=1)
    padded[0, :17] = frames[0]
    out, out_padded = model(frames, mask), model(padded, padded_mask)
    assert torch.equal(out.logits, out_padded.logits)
    assert torch.equal(out.embedding, out_padded.embedding)
    assert torch.equal(out.intermediate["blocks"], out_padded.intermediate["blocks"])


def test_padding_never_changes_loss_or_gradients_in_training():
    torch.manual_seed(0)
    model = _tiny(dropout=0.3).train()
    frames, mask = _batch([17, 6], 17)
    padded, padded_mask = _batch([17, 6], 50, seed=1)
    padded[:, :17] = frames
    labels = torch.tensor([[1.0, 0, 0, 1, 0], [0, 1, 0, 0, 0]])
    results = []
    for x, m in ((frames, mask), (padded, padded_mask)):
        model.zero_grad()
        torch.manual_seed(1)  # same dropout draws
        loss = F.binary_cross_entropy_with_logits(model(x, m).logits, labels)
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
    (loss_a, grads_a), (loss_b, grads_b) = results
    assert torch.equal(loss_a, loss_b)
    for a, b in zip(grads_a, grads_b, strict=True):
        assert torch.equal(a, b)


def test_batch_equals_each_video_alone():
    torch.manual_seed(0)
    model = _tiny().eval()
    lengths = [37, 12, 4, 3, 1]
    frames, mask = _batch(lengths, 40)
    out = model(frames, mask)
    for i, n in enumerate(lengths):
        alone = model(frames[i : i + 1, :n], mask[i : i + 1, :n])
        torch.testing.assert_close(out.logits[i], alone.logits[0], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(out.embedding[i], alone.embedding[0], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(
            out.intermediate["blocks"][i], alone.intermediate["blocks"][0], atol=1e-6, rtol=1e-5
        )


def test_video_without_frames_gives_zero_representation():
    model = _tiny().eval()
    frames, mask = _batch([9, 0], 9)
    out = model(frames, mask)
    assert torch.all(out.embedding[1] == 0) and torch.all(out.intermediate["blocks"][1] == 0)
    torch.testing.assert_close(out.logits[0], model(frames[:1], mask[:1]).logits[0])


def test_gradient_reaches_every_parameter():
    torch.manual_seed(0)
    model = _tiny().train()
    frames, mask = _batch([21, 2], 21)
    model(frames, mask).logits.sum().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_forget_gate_bias_starts_at_one():
    model = _tiny()
    size = model.lower.hidden_size
    expected = torch.zeros(4 * size)
    expected[size : 2 * size] = 1.0
    assert torch.equal(model.lower.bias_ih_l0, expected)
    assert torch.equal(model.upper.bias_hh_l1, torch.zeros(4 * model.upper.hidden_size))


def test_initialize_output_bias():
    model = _tiny()
    model.initialize_output_bias(torch.full((5,), -3.0))
    # MoE: p = M / (M + 1) sigmoid(b) at uniform gates, so b is the logit of 1.5 sigmoid(-3).
    expected = torch.logit(1.5 * torch.sigmoid(torch.tensor(-3.0)))
    torch.testing.assert_close(model.classifier.experts.bias, expected.repeat(10))


def test_paper_parameter_count():
    """The fewer-frames paper's H-RNN at 3862 classes (the count the README's model table
    gives): LSTMs 46,694,400 and a MoE of 79,101,484; blocks add no parameters."""
    assert count_parameters(build_backbone("hrnn_paper", 3862)) == 125_795_884
    assert count_parameters(build_backbone("hrnn_paper", 3862, num_blocks=5)) == 125_795_884


def test_the_unrolled_graph_for_export_equals_the_packed_recurrence():
    """Under tracing the H-RNN runs blocks padded to ceil(T / b) steps with masked state
    updates: same outputs as the packed recurrence (empty blocks and a video without frames
    included, garbage in the padding), and the traced graph takes any batch size."""
    torch.manual_seed(0)
    model = _tiny().eval()
    frames, mask = _batch([9, 23, 3, 0, 1, 16], 23)
    with torch.no_grad():
        packed = model(frames, mask)
        unrolled = model._forward_unrolled(frames, mask)
    torch.testing.assert_close(unrolled.logits, packed.logits)
    torch.testing.assert_close(unrolled.intermediate["blocks"], packed.intermediate["blocks"])

    class Logits(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, frames, mask):
            return self.model(frames, mask).logits

    with torch.no_grad():
        traced = torch.jit.trace(Logits(), (frames[:2], mask[:2]))
        torch.testing.assert_close(traced(frames, mask), packed.logits)


PRESET = Path(__file__).resolve().parents[2] / "conf" / "model" / "hrnn.yaml"


def _easy_problem(videos: int, classes: int, seed: int):
    """Frames shaped like the synthetic set's (1152 features, about 0.36 of noise per feature,
    so a frame's L2 norm is about 12): each video has 1-2 labels, and each label's prototype
    (norm 3.5) is added to a random 40% of its 40 frames."""
    generator = torch.Generator().manual_seed(seed)
    prototypes = F.normalize(torch.randn(classes, 1152, generator=generator), dim=-1) * 3.5
    labels = torch.zeros(videos, classes)
    labels[torch.arange(videos), torch.randint(classes, (videos,), generator=generator)] = 1
    second = torch.rand(videos, generator=generator) < 0.5
    labels[
        second.nonzero()[:, 0], torch.randint(classes, (int(second.sum()),), generator=generator)
    ] = 1
    frames = 0.36 * torch.randn(videos, 40, 1152, generator=generator)
    present = torch.rand(videos, 40, classes, generator=generator) < 0.4
    frames += (present * labels[:, None, :]) @ prototypes
    return frames, torch.ones(videos, 40, dtype=torch.bool), labels


def _train_preset(backbone: dict, lr: float, clip: float | None, steps: int) -> float:
    """BCE on held-out videos after ``steps`` Adam steps of batch 32 with the given backbone
    settings, learning rate and per-tensor clipping (as VideoClassifier trains), outputs
    started at the class priors."""
    torch.manual_seed(0)
    classes = 8
    model = HRNN(classes, **backbone)
    frames, mask, labels = _easy_problem(32 * steps + 256, classes, seed=1)
    model.initialize_output_bias(torch.logit(labels.mean(0).clamp(1e-3, 1 - 1e-3)))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for step in range(steps):
        batch = slice(256 + 32 * step, 256 + 32 * (step + 1))
        loss = (
            F.binary_cross_entropy_with_logits(
                model(frames[batch], mask[batch]).logits, labels[batch], reduction="sum"
            )
            / 32
        )
        optimizer.zero_grad()
        loss.backward()
        if clip is not None:
            for parameter in model.parameters():
                torch.nn.utils.clip_grad_norm_(parameter, clip)
        optimizer.step()
    with torch.no_grad():
        logits = model.eval()(frames[:256], mask[:256]).logits
    return F.binary_cross_entropy_with_logits(logits, labels[:256], reduction="sum").item() / 256


def test_cpu_preset_learns_within_a_few_dozen_steps():
    """The CPU preset (conf/model/hrnn.yaml: its backbone settings, learning rate and clipping)
    must learn an easy problem with frames scaled like the synthetic set's within 20 steps.
    The earlier preset (L2-normalized frames, which shrank the LSTM's inputs about 12x, forget
    bias 1, lr 1e-3) was still near 1.9 nats here, half-way from the prior's ~3.7."""
    preset = OmegaConf.load(PRESET)
    backbone = {
        key: value
        for key, value in OmegaConf.to_container(preset.backbone).items()
        if key not in ("_target_", "num_classes")
    }
    loss = _train_preset(backbone, preset.optimizer.lr, preset.clip_grad_norm_per_tensor, 20)
    assert loss < 1.0
