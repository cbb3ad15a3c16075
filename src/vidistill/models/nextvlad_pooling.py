"""NeXtVLAD aggregation (Lin et al., 2018), for one layer or for several layers run together.

:func:`pool_together` computes M layers of the same shape that read the same frames (the rgb or
audio branch of the NeXtVLADs of a mixture) as one computation, with the parameters of each layer
stacked along a member axis at call time; a single :class:`NeXtVLADPooling` is the case M = 1, so
one code path serves both, and the modules, their parameter names and checkpoints are untouched.

Where a training step spends its time, and what this implementation does about it:

* Expansion and projections. The group attention and the cluster assignment are linear in the
  expanded frames, so when gradients flow they read the *input* frames through the composed
  weights ``(P W_e, P b_e + b_p)`` (P: attention and assignment rows): every layer's projections
  are one wide matmul of the input, and the backward pass no longer multiplies the assignment's
  gradient back through the expanded frames (``N x GK x lambda F``) nor adds it to their
  gradient. The expanded frames then only feed the residual sums, which are linear in them, so
  the expansion's bias joins after the sums (``sum_n a[n, g, k] b_e[g]``) instead of being
  copied onto every frame and summed back out of every gradient. Without gradients (evaluation,
  export, FLOP counting) composing the weights would cost ``(G + GK) lambda F^2`` per call for
  nothing, so the layer runs as defined.
* Expansion of several layers: one matmul per layer into its slice of the output, not a batched
  matmul (:class:`_SharedInputProducts`).
* Aggregation. Each video's residual sum is one matmul over its own frames and groups (a loop
  over videos, :func:`per_video_sums`), not a batched matmul over frames padded to T, which
  copied the expanded frames into a padded tensor twice their size and multiplied the padding.
  The videos are shared among the torch threads, each op on one thread
  (:func:`for_each_video`). A traced graph (TorchScript, ONNX) needs a batch-size-free form and
  takes the padded one.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from vidistill.models.layers import TF_BN_EPS, TF_BN_MOMENTUM, batch_norm_together, unpack

_Result = TypeVar("_Result")


class NeXtVLADPooling(nn.Module):
    """NeXtVLAD aggregation: packed frames [N, F] -> [B, d * K], d = lambda F / G.

    Each frame is expanded to ``lambda * F`` and split into ``G`` groups of ``d`` dimensions; every
    group is softly assigned to ``K`` shared clusters (BatchNorm, softmax) and weighted by a
    sigmoid group attention; residuals to learned centres are summed over frames and groups,
    L2-normalized per cluster (intra-normalization) and batch-normalized.

    Parameters: ``F * lambda F + lambda F`` (expansion) ``+ (lambda F + 1) G`` (attention)
    ``+ lambda F * G K + 2 G K`` (assignment, BN) ``+ d K`` (centres) ``+ 2 d K`` (output BN);
    4,313,096 for the rgb branch of the papers (F 1024, K 128, G 8, lambda 2).
    """

    def __init__(
        self,
        feature_size: int,
        clusters: int = 128,
        groups: int = 8,
        expansion: int = 2,
        bn_momentum: float = TF_BN_MOMENTUM,
        bn_eps: float = TF_BN_EPS,
    ):
        super().__init__()
        if expansion * feature_size % groups:
            raise ValueError(
                f"NeXtVLAD needs expansion * feature_size ({expansion * feature_size}) divisible "
                f"by groups ({groups})"
            )
        self.clusters, self.groups = clusters, groups
        self.group_size = expansion * feature_size // groups
        wide = expansion * feature_size
        self.expand = nn.Linear(feature_size, wide)
        self.attention = nn.Linear(wide, groups)
        self.assign = nn.Linear(wide, groups * clusters, bias=False)
        self.assign_bn = nn.BatchNorm1d(groups * clusters, eps=bn_eps, momentum=bn_momentum)
        self.centers = nn.Parameter(torch.randn(1, self.group_size, clusters) / math.sqrt(wide))
        self.output_bn = nn.BatchNorm1d(
            self.group_size * clusters, eps=bn_eps, momentum=bn_momentum
        )
        nn.init.normal_(self.assign.weight, std=1 / math.sqrt(wide))

    @property
    def output_size(self) -> int:
        return self.group_size * self.clusters

    def forward(self, packed: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """packed [N, F] (see :func:`~vidistill.models.layers.pack`), mask [B, T] -> [B, d * K]."""
        return pool_together([self], packed, mask)[:, 0]

    def together_key(self) -> Hashable:
        """Layers with equal keys can run in one :func:`pool_together` call: same shapes and
        settings (the module's repr), training flags, dtype and device."""
        modules = list(self.modules())
        # A cumulative average (momentum None) weighs each batch by its count: counts must agree.
        counts = tuple(
            int(m.num_batches_tracked)
            for m in modules
            if isinstance(m, nn.BatchNorm1d) and m.momentum is None and m.track_running_stats
        )
        training = tuple(m.training for m in modules)
        return (repr(self), training, self.centers.dtype, self.centers.device, counts)


def pool_together(
    layers: Sequence[NeXtVLADPooling], packed: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """M layers of equal :meth:`~NeXtVLADPooling.together_key` on the same packed frames
    [N, F], mask [B, T] -> [B, M, d * K]: each layer's output, as its own forward computes it
    (its BatchNorms use and update their own statistics)."""
    first, members = layers[0], len(layers)
    g, k, d = first.groups, first.clusters, first.group_size
    weight = torch.stack([layer.expand.weight for layer in layers])  # [M, W, F]
    bias = torch.stack([layer.expand.bias for layer in layers])  # [M, W]
    rows, row_bias = _projection(layers)  # [M, G + GK, W], [M, G + GK]
    products = _expand(packed, weight)  # [M, N, W], the expansion without its bias
    composing = weight.requires_grad or rows.requires_grad  # see the module docstring
    if composing:
        # P (x W^T + b) + b_P = x (P W)^T + (P b + b_P): every layer's logits in one matmul.
        composed = (rows @ weight).flatten(0, 1)  # [M (G + GK), F]
        composed_bias = (rows @ bias.unsqueeze(-1)).squeeze(-1) + row_bias
        logits = torch.addmm(composed_bias.flatten(), packed, composed.t())
        logits = logits.unflatten(1, (members, -1))  # [N, M, G + GK]
        values = products  # the expansion's bias joins after the sums over frames, below
    else:  # the layer as defined
        values = products + bias.unsqueeze(1)  # the expanded frames
        logits = torch.baddbmm(row_bias.unsqueeze(1), values, rows.transpose(1, 2))
        logits = logits.transpose(0, 1)  # [M, N, G + GK] -> [N, M, G + GK]
    assignment = _assign(layers, logits, g, k)  # [M, N, G, K]
    # Sums over each video's frames of the assignment-weighted expanded frames [B, M, K, d] and
    # of each group's assignments [B, M, G, K].
    vlad, group_sums = per_video_sums(assignment, values.unflatten(2, (g, d)), mask)
    if composing:  # the sums are linear: sum_n a[n, g, k] b[g] adds the bias
        vlad = vlad + torch.einsum("bmgk,mgd->bmkd", group_sums, bias.unflatten(1, (g, d)))
    centers = torch.stack([layer.centers[0].t() for layer in layers])  # [M, K, d]
    vlad = F.normalize(vlad - group_sums.sum(2).unsqueeze(-1) * centers, dim=-1)
    # Each layer flattens its [d, K] residuals d-major: keep that order for its output BN.
    flat = vlad.transpose(2, 3).flatten(1)  # [B, M * d * K]
    normalized = batch_norm_together([layer.output_bn for layer in layers], flat)
    return normalized.unflatten(1, (members, d * k))


def _projection(layers: Sequence[NeXtVLADPooling]) -> tuple[torch.Tensor, torch.Tensor]:
    """The attention and assignment rows of each layer as one projection of the expanded
    frames: weight [M, G + GK, W] and bias [M, G + GK] (the assignment has none)."""
    rows = torch.stack([torch.cat([lay.attention.weight, lay.assign.weight]) for lay in layers])
    row_bias = torch.stack(
        [F.pad(lay.attention.bias, (0, lay.assign.out_features)) for lay in layers]
    )
    return rows, row_bias


def _expand(packed: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """packed [N, F] @ weight[m]^T for each of the M layers -> [M, N, W]."""
    if torch.jit.is_tracing():  # a graph without Python-side loops and in-place outputs
        return torch.matmul(packed, weight.transpose(1, 2))
    return _SharedInputProducts.apply(packed, weight)


class _SharedInputProducts(torch.autograd.Function):
    """x [N, F] @ weight[m]^T for each of M layers, weight [M, W, F] -> [M, N, W], one matmul
    per layer written into its slice of the output (the backward pass likewise).

    Not a batched matmul: over a batch of 3 on 2 threads it left a thread idle a third of the
    time (262 against 381 GFLOP/s for 3 separate matmuls, measured), and even a batch of 1 or
    12 ran 10-15% slower than separate matmuls.
    """

    @staticmethod
    def forward(ctx, x, weight):
        ctx.save_for_backward(x, weight)
        out = x.new_empty(len(weight), len(x), weight.shape[1])
        for m in range(len(weight)):
            torch.mm(x, weight[m].t(), out=out[m])
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):  # grad [M, N, W]
        x, weight = ctx.saved_tensors
        grad_x = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.zeros_like(x)
            for m in range(len(weight)):
                grad_x.addmm_(grad[m], weight[m])
        if ctx.needs_input_grad[1]:
            grad_weight = torch.empty_like(weight)
            for m in range(len(weight)):
                torch.mm(grad[m].t(), x, out=grad_weight[m])
        return grad_x, grad_weight


def _assign(
    layers: Sequence[NeXtVLADPooling], logits: torch.Tensor, groups: int, clusters: int
) -> torch.Tensor:
    """Attention-weighted soft assignments [M, N, G, K] from the attention and assignment
    logits [N, M, G + GK]."""
    # split, not two slices: its backward pass joins the gradients, slices' would zero-fill.
    attention, assignment = logits.split([groups, groups * clusters], dim=-1)
    assignment = assignment.flatten(1)  # [N, M * GK], a copy of the (strided) slice
    assignment = batch_norm_together([layer.assign_bn for layer in layers], assignment)
    assignment = assignment.unflatten(1, (len(layers), groups, clusters)).transpose(0, 1)
    return F.softmax(assignment, dim=-1) * torch.sigmoid(attention).transpose(0, 1).unsqueeze(-1)


def per_video_sums(
    assignment: torch.Tensor, values: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sums over each video's frames n: ``sum_{n, r} assignment[m, n, r]^T values[m, n, r]``
    [B, M, K, D] and ``sum_n assignment[m, n]`` [B, M, R, K], for assignment [M, N, R, K] and
    values [M, N, R, D] on packed frames, mask [B, T]."""
    # Contiguous (no-ops on what pool_together passes): a video's frames and rows then form one
    # matrix per member, a view.
    assignment, values = assignment.contiguous(), values.contiguous()
    if torch.jit.is_tracing():
        return _padded_sums(assignment, values, mask)
    lengths = mask.sum(1).tolist()
    if len(set(lengths)) == 1:  # k-frame students: one batched matmul, nothing padded
        return _equal_length_sums(assignment, values, len(lengths))
    return _PerVideoSums.apply(assignment, values, lengths)


def _equal_length_sums(
    assignment: torch.Tensor, values: torch.Tensor, batch: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`per_video_sums` when every video has the same number of frames L: the packed
    frames of video b are rows ``b L .. b L + L - 1``, so each (member, video) block is a view
    and the products are one batched matmul over B M blocks (autograd's backward likewise)."""
    members, frames, rows, clusters = assignment.shape
    length = frames // batch
    blocks = assignment.view(members * batch, length * rows, clusters)
    products = torch.bmm(blocks.transpose(1, 2), values.view(members * batch, length * rows, -1))
    sums = assignment.view(members, batch, length, rows, clusters).sum(2)
    return products.view(members, batch, clusters, -1).transpose(0, 1), sums.transpose(0, 1)


def _padded_sums(
    assignment: torch.Tensor, values: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`per_video_sums` as one batched matmul over frames padded to T: it multiplies the
    padding too, but its graph keeps the batch size and the frame count free."""
    members, _, rows, clusters = assignment.shape
    batch, length = mask.shape

    def padded(packed: torch.Tensor) -> torch.Tensor:  # [M, N, R, X] -> [B, M, T, R, X]
        return unpack(packed.transpose(0, 1), mask).transpose(1, 2)

    assigned = padded(assignment)
    products = torch.bmm(
        assigned.reshape(batch * members, length * rows, clusters).transpose(1, 2),
        padded(values).reshape(batch * members, length * rows, -1),
    )
    return products.view(batch, members, clusters, -1), assigned.sum(2)


def for_each_video(
    work: Callable[[int, int, int], _Result], lengths: Sequence[int], device: torch.device
) -> list[_Result]:
    """``work(video, start, end)`` for every video of a packed batch (``start:end``: its rows),
    the results in video order.

    A video's matmuls are too small to gain much from splitting over OpenMP threads, and every
    parallel region waits for all of its threads: on cores shared with other processes a
    per-video loop ran 13-25x slower on 2 OpenMP threads than on 1 (measured on a 2-vCPU
    machine). So every op here runs on one thread, and the videos are shared out instead: with
    ``torch.get_num_threads()`` = P > 1, P Python threads (the caller's and P - 1 of a pool;
    torch releases the GIL inside its ops) each take a run of consecutive videos of about the
    same number of frames, and meet once at the end. Each video's ops are the same as in a
    plain loop, so the results are too. The pool's threads work in the caller's grad,
    inference and autocast modes (all three are per thread). On other devices than the CPU,
    and under a dispatch mode (FlopCounterMode and the like see only their own thread's ops),
    the loop runs in the calling thread.
    """
    bounds = list(itertools.pairwise(itertools.accumulate(lengths, initial=0)))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # process-wide; pool threads take it at their first op
    try:
        runs = _balanced_runs(lengths, threads if _may_share(device) else 1)
        if len(runs) == 1:
            return [work(video, *bounds[video]) for video in runs[0]]
        modes = _caller_modes()

        def run(videos: range) -> list[_Result]:
            with modes():
                return [work(video, *bounds[video]) for video in videos]

        futures = [_pool(len(runs) - 1).submit(run, videos) for videos in runs[1:]]
        results = run(runs[0])
        for future in futures:  # waits for all, re-raises the first error
            results += future.result()
        return results
    finally:
        torch.set_num_threads(threads)


def _may_share(device: torch.device) -> bool:
    """Whether the videos may be shared among threads: CPU tensors, no dispatch mode active."""
    return device.type == "cpu" and torch._C._len_torch_dispatch_stack() == 0


def _caller_modes() -> Callable[[], contextlib.AbstractContextManager]:
    """A context that puts another thread in the calling thread's grad, inference and CPU
    autocast modes."""
    grad, inference = torch.is_grad_enabled(), torch.is_inference_mode_enabled()
    autocast, dtype = torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")

    @contextlib.contextmanager
    def modes():
        with (
            torch.inference_mode(inference),
            torch.set_grad_enabled(grad),
            torch.autocast("cpu", dtype=dtype, enabled=autocast),
        ):
            yield

    return modes


def _balanced_runs(lengths: Sequence[int], parts: int) -> list[range]:
    """Consecutive videos in at most ``parts`` non-empty runs of about equal total length."""
    total, runs, first, done = sum(lengths), [], 0, 0
    for video, length in enumerate(lengths):
        done += length
        if done * parts >= total * (len(runs) + 1) and len(runs) < parts - 1:
            runs.append(range(first, video + 1))
            first = video + 1
    if first < len(lengths) or not runs:
        runs.append(range(first, len(lengths)))
    return runs


_POOL: tuple[int, int, ThreadPoolExecutor] | None = None  # (pid, workers, pool)


def _pool(workers: int) -> ThreadPoolExecutor:
    """The process's pool of ``workers`` threads for :func:`for_each_video`, made anew after a
    fork (a forked child has the object but not its threads) or for another size."""
    global _POOL
    if _POOL is None or _POOL[:2] != (os.getpid(), workers):
        if _POOL is not None and _POOL[0] == os.getpid():
            _POOL[2].shutdown(wait=False)
        _POOL = (os.getpid(), workers, ThreadPoolExecutor(workers, "vidistill-videos"))
    return _POOL[2]


class _PerVideoSums(torch.autograd.Function):
    """One batched matmul per video on views of the packed tensors; the backward pass writes each
    video's gradients into place (no per-video pieces to concatenate, no padding)."""

    @staticmethod
    def forward(ctx, assignment, values, lengths):
        ctx.save_for_backward(assignment, values)
        ctx.lengths = lengths

        def video_sums(video: int, start: int, end: int) -> tuple[torch.Tensor, torch.Tensor]:
            a, v = assignment[:, start:end], values[:, start:end]  # [M, L, R, K or D]
            # [M, L * R, K]^T @ [M, L * R, D]: the frames and rows of one video are contiguous.
            return torch.bmm(a.flatten(1, 2).transpose(1, 2), v.flatten(1, 2)), a.sum(1)

        products, sums = zip(*for_each_video(video_sums, lengths, assignment.device), strict=True)
        return torch.stack(products), torch.stack(sums)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad, grad_sums):  # [B, M, K, D], [B, M, R, K]
        assignment, values = ctx.saved_tensors
        # Under autocast (bf16-mixed) the forward's matmuls ran in bf16 on fp32 inputs, so the
        # gradients come in bf16: one dtype for the out= matmuls below (autograd casts each
        # returned gradient to its input's dtype). No copies outside autocast.
        dtype = torch.promote_types(assignment.dtype, values.dtype)
        assignment, values = assignment.to(dtype), values.to(dtype)
        grad, grad_sums = grad.to(dtype), grad_sums.to(dtype)
        # Contiguous like the inputs, so that each video's block below is a view to write into.
        grad_assignment = (
            assignment.new_empty(assignment.shape) if ctx.needs_input_grad[0] else None
        )
        grad_values = values.new_empty(values.shape) if ctx.needs_input_grad[1] else None

        def video_gradients(video: int, start: int, end: int) -> None:
            a, v = assignment[:, start:end], values[:, start:end]  # [M, L, R, K or D]
            if grad_assignment is not None:  # [M, L * R, D] @ [M, D, K], + the sums'
                block = grad_assignment[:, start:end]
                torch.bmm(v.flatten(1, 2), grad[video].transpose(1, 2), out=block.flatten(1, 2))
                block.add_(grad_sums[video].unsqueeze(1))
            if grad_values is not None:  # [M, L * R, K] @ [M, K, D]
                torch.bmm(a.flatten(1, 2), grad[video], out=grad_values[:, start:end].flatten(1, 2))

        for_each_video(video_gradients, ctx.lengths, assignment.device)
        return grad_assignment, grad_values, None
