"""The teachers of teacher-student distillation: frozen backbones (one, several, a mixture) and
what the loss terms read of their outputs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vidistill.models.base import Backbone, BackboneOutput


class FrozenTeacher(nn.Module):
    """A trained backbone used as a fixed target.

    Its parameters never receive gradients, it stays in eval mode whatever ``train()`` is called
    with (Lightning puts the whole model back in training mode after every validation), it runs
    without autograd, and its weights are left out of the state dict: the student's checkpoints
    do not carry a copy of the teacher's checkpoint. Loading a state dict keeps the teacher's
    current weights.
    """

    def __init__(self, backbone: Backbone):
        super().__init__()
        self.backbone = backbone.requires_grad_(False).eval()
        self.register_state_dict_post_hook(_drop_own_entries)
        self.register_load_state_dict_pre_hook(_keep_own_entries)

    def train(self, mode: bool = True) -> FrozenTeacher:
        return super().train(False)

    @torch.no_grad()
    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> BackboneOutput:
        return self.backbone(frames, mask)


def _drop_own_entries(module: nn.Module, state_dict: dict, prefix: str, local_metadata) -> None:
    for key in [key for key in state_dict if key.startswith(prefix)]:
        del state_dict[key]


def _keep_own_entries(module: FrozenTeacher, state_dict: dict, prefix: str, *args) -> None:
    own = module.backbone.state_dict(prefix=f"{prefix}backbone.", keep_vars=True)
    for key, value in own.items():
        state_dict.setdefault(key, value)


def normalized_weights(weights: Sequence[float] | None, count: int) -> list[float]:
    """Teacher weights that sum to 1 (equal when None); ValueError for a wrong count or a
    negative or all-zero list."""
    if weights is None:
        return [1.0 / count] * count
    weights = [float(w) for w in weights]
    if len(weights) != count:
        raise ValueError(f"{len(weights)} teacher weights for {count} teachers")
    if min(weights) < 0 or sum(weights) <= 0:
        raise ValueError(f"teacher weights must be >= 0 and not all 0, got {weights}")
    return [w / sum(weights) for w in weights]


@dataclass
class TeacherOutputs:
    """The teachers' outputs on one batch, with their weights (summing to 1)."""

    outputs: list[BackboneOutput]
    weights: list[float]

    def averaged_logits(self, temperature: float, softmax: bool = False) -> torch.Tensor:
        """Logits [B, C] whose probabilities at ``temperature`` are the teachers' weighted mean
        probabilities there: ``sigmoid(z / T) = sum_i w_i sigmoid(z_i / T)`` per class, or with
        ``softmax`` the same for the softmax over classes. One teacher: its own logits. The
        mean is taken in log space, so no probability is rounded to 0 or 1 on the way."""
        if len(self.outputs) == 1:
            return self.outputs[0].logits
        scaled = torch.stack([out.logits for out in self.outputs]) / temperature  # [N, B, C]
        log_w = torch.tensor([math.log(w) if w > 0 else -math.inf for w in self.weights])
        log_w = log_w.to(scaled).view(-1, 1, 1)
        if softmax:
            return temperature * torch.logsumexp(log_w + scaled.log_softmax(-1), 0)
        positive = torch.logsumexp(log_w + F.logsigmoid(scaled), 0)
        negative = torch.logsumexp(log_w + F.logsigmoid(-scaled), 0)
        return temperature * (positive - negative)

    def probabilities(self) -> torch.Tensor:
        """The teachers' weighted mean probabilities [B, C] (temperature 1)."""
        return torch.sigmoid(self.averaged_logits(1.0))


def as_teacher_outputs(teachers: TeacherOutputs | BackboneOutput) -> TeacherOutputs:
    """A single teacher's output as the outputs of one teacher of weight 1 (terms take either)."""
    if isinstance(teachers, BackboneOutput):
        return TeacherOutputs([teachers], [1.0])
    return teachers


def teacher_representation(output: BackboneOutput) -> torch.Tensor:
    """The representation L_rep matches [B, E]: a backbone's embedding; for a mixture (tree),
    its members' representations each scaled by its gate weight, concatenated.

    Why gate-weighted: a mixture's logits are ``sum_m w_m z_m``, and with a linear classifier
    per leaf (``z_m = W_m e_m + b_m``) that is ``[W_1 ... W_M] [w_1 e_1; ...; w_M e_M]`` plus a
    gate-weighted bias. The gate-weighted concatenation is therefore the vector the mixture's
    final prediction is read from, per video, while the plain concatenation would ask the
    student to also reproduce members the gate ignores for that video. The size is the
    mixture's ``embedding_size`` (the sum of its members'), so a projection is sized as usual.
    """
    if not output.members:
        return output.embedding
    gate = output.intermediate["gate"]  # [B, N]
    parts = [
        gate[:, m : m + 1] * teacher_representation(member).to(gate.device)
        for m, member in enumerate(output.members)
    ]
    return torch.cat(parts, 1)


def detached(output: BackboneOutput) -> BackboneOutput:
    """``output`` cut from the autograd graph, members included."""
    return BackboneOutput(
        logits=output.logits.detach(),
        embedding=output.embedding.detach(),
        intermediate={key: value.detach() for key, value in output.intermediate.items()},
        members=[detached(member) for member in output.members],
    )
