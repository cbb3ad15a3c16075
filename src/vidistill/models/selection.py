"""Learned frame selection: which k frames of a video a student sees, chosen per video from a
cheap signal (the 128-d audio of every frame).

The fewer-frames paper's baselines show that spreading the k frames over the video (Uniform-k)
beats every contiguous choice, and names learning where to look as its next step. A
:class:`SegmentFrameSelector` keeps the spread and learns the rest: the video's n frames are cut
into k equal bins, the bins Uniform-k takes its frames from (frame t is in bin
``floor((t + 0.5) k / n)``, which holds Uniform-k's frame ``floor((j + 0.5) n / k)`` in bin j),
and the selector picks one frame in each bin. So every choice is k distinct frames in time order
within the video (all n frames when n <= k), and a selector that has learned nothing (its output
layer starts at zero, leaving only a prior centred on Uniform-k's frames) picks exactly
Uniform-k's frames at evaluation.

Training: the choice is discrete, so the selector is trained by REINFORCE (the score-function
estimator) rather than a relaxed top-k. In training each bin's frame is sampled from the softmax
of the scores within the bin (Gumbel-max); the log-probability of the choice is the sum over
bins; the reward of a video is how well the student's prediction on the chosen frames agrees
with its target (the teacher's probabilities under distillation, the labels without):
``-KL_bernoulli(target || student)``. Why REINFORCE: it needs nothing of the student but its
output, so it works for every backbone (H-RNN's recurrence over exactly k frames included),
trains the student on exactly the frames it will see at inference (a relaxation would feed it
mixtures of frames), and costs one student pass at k frames per step. Its variance is kept down
by the per-bin choice (k small categorical choices instead of one over n-choose-k subsets) and a
leave-one-out baseline over the batch.

Evaluation and inference: each bin's highest-scoring frame, deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vidistill.features import FEATURE_SIZE, RGB_SIZE
from vidistill.models.base import BackboneOutput

SIGNALS = {"audio": (RGB_SIZE, FEATURE_SIZE)}
"""The cheap signals a selector may read: the columns ``[start, stop)`` of a frame's features."""


@dataclass
class FrameChoice:
    """The frames chosen per video.

    Attributes:
        indices: int64 [B, k] frame indices, increasing along each row over its valid slots
            (invalid slots hold 0).
        mask: bool [B, k] the valid slots: a video of n < k frames fills only n of them.
        log_prob: [B] log-probability of the choice under the selector's sampling distribution
            (its REINFORCE term's input; defined in evaluation too, for the argmax choice).
    """

    indices: torch.Tensor
    mask: torch.Tensor
    log_prob: torch.Tensor

    def gather(self, frames: torch.Tensor) -> torch.Tensor:
        """The chosen frames of frames [B, T, D] -> [B, k, D] (invalid slots zeroed)."""
        index = self.indices.unsqueeze(-1).expand(-1, -1, frames.shape[-1])
        chosen = frames.gather(1, index)
        return chosen * self.mask.unsqueeze(-1).to(chosen.dtype)


def run_on_choice(
    backbone: nn.Module, selector: nn.Module | None, frames: torch.Tensor, mask: torch.Tensor
) -> tuple[BackboneOutput, FrameChoice | None]:
    """``backbone`` on the frames ``selector`` picks from frames [B, T, D] with mask [B, T]
    (on all of them without a selector): its output and the choice (None without one)."""
    if selector is None:
        return backbone(frames, mask), None
    choice = selector(frames, mask)
    return backbone(choice.gather(frames), choice.mask), choice


def bin_of_frames(lengths: torch.Tensor, k: int, frames: int) -> torch.Tensor:
    """The bin of every frame: int64 [B, T] for ``lengths`` [B] (valid frames per video), -1 for
    padding. With n > k, frame t is in bin ``floor((t + 0.5) k / n)``; with n <= k each frame is
    its own bin."""
    t = torch.arange(frames, device=lengths.device)
    n = lengths.unsqueeze(1)
    spread = torch.div((2 * t + 1) * k, 2 * n.clamp_min(1), rounding_mode="floor").clamp_max(k - 1)
    bins = torch.where(n > k, spread, t.expand_as(spread))
    return bins.masked_fill(t >= n, -1)


def uniform_prior(lengths: torch.Tensor, bins: torch.Tensor, k: int) -> torch.Tensor:
    """-(distance of each frame to its bin's Uniform-k frame, in bin widths) [B, T]: 0 at the
    frames Uniform-k takes, down to about -0.5 at a bin's edges."""
    n = lengths.unsqueeze(1).to(torch.float32).clamp_min(1.0)
    anchor = torch.floor((bins.clamp_min(0).to(torch.float32) + 0.5) * n / k)
    t = torch.arange(bins.shape[1], device=bins.device, dtype=torch.float32)
    distance = (t - anchor).abs() * k / n
    return -torch.where(n > k, distance, torch.zeros_like(distance))


class SegmentFrameSelector(nn.Module):
    """Chooses one frame in each of k bins of a video from a cheap per-frame signal.

    Scores [B, T]: ``prior * uniform_prior + head(context(embed(signal)))``: a per-frame linear
    embedding of the signal (audio [B, T, 128] -> [B, T, H]), a temporal convolution over
    ``context`` frames, and a linear head to one score per frame, started at zero.

    Args:
        k: frames chosen per video.
        hidden: H, the width of the scoring network.
        context: frames the temporal convolution sees (odd).
        prior: strength of the prior towards Uniform-k's frames (0: none; then an untrained
            selector picks the first frame of each bin).
        signal: which columns of a frame the selector reads (:data:`SIGNALS`).
        weight: weight of the REINFORCE term in the training loss (0: the selector is not
            trained, it samples around its prior and picks Uniform-k's frames at evaluation).
    """

    def __init__(
        self,
        k: int,
        hidden: int = 16,
        context: int = 3,
        prior: float = 1.0,
        signal: str = "audio",
        weight: float = 1.0,
    ):
        super().__init__()
        if k < 1:
            raise ValueError(f"the selector needs k >= 1 frames, got {k}")
        if context < 1 or context % 2 == 0:
            raise ValueError(f"context must be a positive odd number of frames, got {context}")
        if signal not in SIGNALS:
            raise ValueError(f"unknown selector signal {signal!r}; choose one of {list(SIGNALS)}")
        if weight < 0:
            raise ValueError(f"the selector's weight must be >= 0, got {weight}")
        self.k, self.prior, self.signal, self.weight = int(k), float(prior), signal, float(weight)
        start, stop = SIGNALS[signal]
        self.columns = (start, stop)
        self.embed = nn.Linear(stop - start, hidden)
        self.context = nn.Conv1d(hidden, hidden, context, padding=context // 2)
        self.head = nn.Linear(hidden, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    @property
    def signal_size(self) -> int:
        return self.columns[1] - self.columns[0]

    def scores(self, signal: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Learned scores [B, T] of the signal [B, T, S] (padding's are meaningless)."""
        valid = mask.unsqueeze(-1).to(signal.dtype)
        hidden = F.relu(self.embed(signal)) * valid  # padding must not leak into neighbours
        hidden = F.relu(self.context(hidden.transpose(1, 2))).transpose(1, 2)
        return self.head(hidden).squeeze(-1)

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> FrameChoice:
        """frames [B, T, D] (or only the signal's columns, [B, T, S]), mask [B, T] -> the
        choice: sampled in training mode, each bin's best frame in eval mode."""
        signal = (
            frames if frames.shape[-1] == self.signal_size else frames[..., slice(*self.columns)]
        )
        lengths = mask.sum(1).to(torch.int64)
        bins = bin_of_frames(lengths, self.k, frames.shape[1])
        logits = self.scores(signal.float(), mask) + self.prior * uniform_prior(
            lengths, bins, self.k
        )
        slots = torch.arange(self.k, device=bins.device)
        member = bins.unsqueeze(1) == slots.view(1, -1, 1)  # [B, k, T]
        valid = member.any(-1)  # [B, k]
        per_bin = logits.unsqueeze(1).masked_fill(~member, float("-inf"))
        per_bin = per_bin.masked_fill(~valid.unsqueeze(-1), 0.0)  # empty bins: a finite row
        log_probs = per_bin.log_softmax(-1)
        if self.training:
            # Gumbel-max: argmax of log-probabilities plus Gumbel noise samples each bin's frame.
            noise = -torch.empty_like(log_probs).exponential_().log()
            indices = (log_probs + noise).argmax(-1)
        else:
            indices = log_probs.argmax(-1)
        chosen = log_probs.gather(-1, indices.unsqueeze(-1)).squeeze(-1)
        log_prob = (chosen * valid).sum(-1)
        return FrameChoice(indices * valid, valid, log_prob)

    def reinforce_loss(self, choice: FrameChoice, reward: torch.Tensor) -> torch.Tensor:
        """The REINFORCE surrogate ``-weight * mean(advantage * log_prob)`` for rewards [B]:
        its gradient is the score-function estimate of the expected reward's. The advantage is
        the reward minus the mean of the other videos' rewards (leave-one-out; an unbiased
        baseline), scaled by the batch's reward spread so that the term's size does not depend
        on the reward's units."""
        reward = reward.detach().float()
        count = reward.numel()
        if count < 2 or self.weight == 0:
            return choice.log_prob.sum() * 0.0
        baseline = (reward.sum() - reward) / (count - 1)
        advantage = (reward - baseline) / reward.std().clamp_min(1e-6)
        return -self.weight * (advantage * choice.log_prob).mean()

    def flops_per_video(self, frames: int) -> int:
        """Multiply-adds to score ``frames`` frames (the embedding, the convolution, the head)."""
        hidden = self.embed.out_features
        per_frame = (
            self.signal_size * hidden + self.context.kernel_size[0] * hidden * hidden + hidden
        )
        return frames * per_frame

    def extra_repr(self) -> str:
        return f"k={self.k}, signal={self.signal}, prior={self.prior}, weight={self.weight}"


def agreement_reward(student_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-video reward [B]: ``-sum_c KL(Bernoulli(target) || Bernoulli(sigmoid(logits)))`` for
    student logits [B, C] and target probabilities [B, C] (a teacher's, or the labels)."""
    logits = student_logits.detach().float()
    target = target.float()
    cross = F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(-1)
    entropy = F.binary_cross_entropy(target, target, reduction="none").sum(-1)
    return -(cross - entropy)


__all__ = [
    "FrameChoice",
    "SegmentFrameSelector",
    "agreement_reward",
    "bin_of_frames",
    "uniform_prior",
]
