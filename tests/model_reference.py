"""References for the models' fast paths, and the comparisons the tests make with them.

``reference_pooling`` is the NeXtVLAD layer as it was first written here (the expansion, then the
attention and assignment projections of the expanded frames, a batched matmul over frames padded
to T); ``member_by_member`` runs a mixture tree as it was first written (every leaf alone, in
order, each mixture's gate before its members). The layers and trees under test must give their
outputs, gradients and BatchNorm statistics to 1e-5 (:func:`assert_close`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vidistill.models import BackboneOutput, Mixture, NeXtVLAD, masked_mean
from vidistill.models.layers import pack, unpack
from vidistill.models.nextvlad_pooling import NeXtVLADPooling


def reference_pooling(
    layer: NeXtVLADPooling, packed: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """packed [N, F], mask [B, T] -> [B, d * K], computed as the layer is defined."""
    g, k, d = layer.groups, layer.clusters, layer.group_size
    x = layer.expand(packed)
    attention = torch.sigmoid(layer.attention(x))
    assignment = F.softmax(layer.assign_bn(layer.assign(x)).view(-1, g, k), dim=-1)
    assignment = assignment * attention.unsqueeze(-1)
    batch, length = mask.shape
    assignment = unpack(assignment, mask).view(batch, length * g, k)
    grouped = unpack(x, mask).view(batch, length * g, d)
    vlad = torch.bmm(assignment.transpose(1, 2), grouped).transpose(1, 2)  # [B, d, K]
    vlad = vlad - assignment.sum(1, keepdim=True) * layer.centers
    vlad = F.normalize(vlad, dim=1)
    return layer.output_bn(vlad.reshape(batch, d * k))


def reference_nextvlad(model: NeXtVLAD, frames: torch.Tensor, mask: torch.Tensor):
    """A NeXtVLAD's output with both branches pooled by :func:`reference_pooling`."""
    x = pack(frames, mask)
    video = reference_pooling(model.video, x[:, : model.rgb_size], mask)
    audio = reference_pooling(model.audio, x[:, model.rgb_size :], mask)
    return model.head(torch.cat([video, audio], 1))


def member_by_member(node: nn.Module, frames: torch.Tensor, mask: torch.Tensor):
    """A mixture tree's output with every leaf run alone (NeXtVLADs by their definition)."""
    if isinstance(node, NeXtVLAD):
        return reference_nextvlad(node, frames, mask)
    if not isinstance(node, Mixture):
        return node(frames, mask)
    weights = F.softmax(node.gate(node.gate_bn(masked_mean(frames, mask))), dim=-1)
    outputs = [member_by_member(member, frames, mask) for member in node.members]
    logits = torch.stack([out.logits for out in outputs], 1)
    return BackboneOutput(
        logits=(weights.unsqueeze(-1) * logits).sum(1),
        embedding=torch.cat([out.embedding for out in outputs], 1),
        intermediate={"gate": weights},
        members=outputs,
    )


def assert_close(got: torch.Tensor, expected: torch.Tensor, msg: str = "") -> None:
    """Equal to 1e-5, relative to the tensor's largest entry: a float32 sum over many terms
    rounds at that scale, so an entry near 0 of a tensor of large ones may differ by more than
    1e-5 of itself in two summation orders. In float64, equal to 1e-10."""
    scale = max(1.0, expected.abs().max().item()) if expected.numel() else 1.0
    tolerance = 1e-10 if expected.dtype == torch.float64 else 1e-5
    torch.testing.assert_close(got, expected, rtol=tolerance, atol=tolerance * scale, msg=msg)


def nodes(output: BackboneOutput) -> list[BackboneOutput]:
    """Every node of an output tree, root first, depth first."""
    return [output, *(node for member in output.members for node in nodes(member))]


def assert_same_outputs(got: BackboneOutput, expected: BackboneOutput) -> None:
    """Every node's logits, embedding and intermediate tensors, by :func:`assert_close`."""
    assert len(nodes(got)) == len(nodes(expected))
    for a, b in zip(nodes(got), nodes(expected), strict=True):
        assert_close(a.logits, b.logits)
        assert_close(a.embedding, b.embedding)
        assert a.intermediate.keys() == b.intermediate.keys()
        for key in b.intermediate:
            assert_close(a.intermediate[key], b.intermediate[key], msg=key)


def assert_same_state(got: nn.Module, expected: nn.Module) -> None:
    """Every gradient and buffer (BatchNorm statistics and batch counts), by name."""

    def state(module: nn.Module) -> dict[str, torch.Tensor]:
        grads = {f"grad {n}": p.grad for n, p in module.named_parameters() if p.grad is not None}
        return {**grads, **dict(module.named_buffers())}

    got_state, expected_state = state(got), state(expected)
    assert got_state.keys() == expected_state.keys()
    for name, tensor in expected_state.items():
        assert_close(got_state[name], tensor, msg=name)
