"""Model size and inference cost per video, in the papers' convention and in full.

Unit: one multiply-add (MAC) counts as one FLOP everywhere here, as in the papers' tables.
Only matrix products are counted (linear layers, batched matmuls, LSTM gate matmuls); biases,
BatchNorm (foldable into the preceding layer at inference), activations, softmax,
normalizations and other elementwise work are not.

Two counts, for one video whose ``frames`` frames are all valid:

* ``flops_total``: every layer of the model, both modalities, the video-level head included.
  Measured on a forward pass: :class:`torch.utils.flop_counter.FlopCounterMode` counts matmuls
  (2 FLOPs per MAC, halved here), and recurrent layers (``nn.RNNBase``, ``nn.RNNCellBase``) are
  counted analytically by forward hooks, which also remove whatever the counter saw inside them:
  on CPU an unpacked LSTM runs in one oneDNN kernel that FlopCounterMode counts as 0, while a
  packed one decomposes into counted matmuls, so without this LSTMs would be missed or counted
  depending on the code path. (:class:`~vidistill.models.hrnn.HRNN` runs its own recurrence on
  ``nn.LSTM`` weights without calling the modules, so its matmuls are counted as they run.)
* ``flops_paper``: the papers' convention, multiply-adds of the frame-level layers of the rgb
  branch only, i.e. ``frames`` times the per-frame count each backbone gives
  (``Backbone.paper_flops_per_frame``; ``None`` for a family the papers do not count):

  - NeXtVLAD: expansion ``F * lambda F`` + assignment ``lambda F * G K`` + aggregation
    ``K * lambda F`` = 4,456,448 per frame for (8G, 128K, X2): 1.337 G at 300 frames and 0.134 G
    at 30, the fewer-frames paper's Table 6 exactly (the group attention, ``lambda F * G``, is
    left out, as there).
  - NetVLAD: assignment ``F K`` + aggregation ``F K`` (no paper figure to check against).
  - DBoF: the frame projection's rgb columns, ``1024 * cluster_size``.
  - FrameMeanLogistic: 0 (averaging frames takes no multiplications).
  - H-RNN: the lower LSTM, its first layer's rgb inputs only:
    ``4 H (1024 + H) + (layers - 1) 4 H (2 H)`` = 16,777,216 per frame at H = 1024, i.e.
    5.033 G at 300 frames against the paper's 5.058 G (Table 3, -0.5%), 0.168 G at k = 10
    (paper 0.167) and 0.503 G at k = 30 (paper 0.520, -3.2%). The upper LSTM, a per-block cost,
    is left out: adding it (29,360,128 MACs per block, 0.587 G for 20 blocks) overshoots to
    5.62 G, and no per-frame plus per-block count fits the table (with 5-block students, the
    k = 10 and k = 30 entries alone imply 17.65 M per frame and a negative per-block cost; the
    k = 20 entry, 0.268 G, fits nothing, likely a typo). The paper does not state its count.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from vidistill.features import FEATURE_SIZE
from vidistill.models.base import count_parameters

# Gate count per recurrent cell type: each gate is an (input + hidden) x hidden product per step.
_GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}
_CELL_GATES = {nn.LSTMCell: 4, nn.GRUCell: 3, nn.RNNCell: 1}


def count(model: nn.Module, frames: int, feature_size: int = FEATURE_SIZE) -> dict[str, int | None]:
    """Parameters and multiply-adds of ``model`` for one video of ``frames`` valid frames.

    Returns ``params`` (trainable parameters), ``flops_paper`` (the papers' convention, ``None``
    for a model family without one) and ``flops_total`` (every layer), both in multiply-adds.
    The model runs once in eval mode, without gradients, on zeros [1, frames, feature_size];
    its training mode is restored afterwards.
    """
    if frames < 1:
        raise ValueError(f"count FLOPs at one frame or more, got frames={frames}")
    per_frame = getattr(model, "paper_flops_per_frame", lambda: None)()
    return {
        "params": count_parameters(model),
        "flops_paper": None if per_frame is None else frames * per_frame,
        "flops_total": _count_total(model, frames, feature_size),
    }


def _count_total(model: nn.Module, frames: int, feature_size: int) -> int:
    reference = next(model.parameters())
    x = torch.zeros(1, frames, feature_size, dtype=reference.dtype, device=reference.device)
    mask = torch.ones(1, frames, dtype=torch.bool, device=reference.device)
    counter = FlopCounterMode(display=False)
    recurrent = _RecurrentCounter(counter)
    handles = [
        handle
        for module in model.modules()
        if isinstance(module, (nn.RNNBase, nn.RNNCellBase))
        for handle in (
            module.register_forward_pre_hook(recurrent.before),
            module.register_forward_hook(recurrent.after),
        )
    ]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), counter:
            model(x, mask)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return (counter.get_total_flops() - recurrent.counted_inside) // 2 + recurrent.macs


class _RecurrentCounter:
    """Forward hooks counting recurrent layers analytically (see the module docstring)."""

    def __init__(self, counter: FlopCounterMode):
        self.counter = counter
        self.macs = 0  # analytic multiply-adds of the recurrent layers
        self.counted_inside = 0  # FLOPs FlopCounterMode saw inside them (to be removed)
        self._start = 0

    def before(self, module: nn.Module, inputs: tuple) -> None:
        self._start = self.counter.get_total_flops()

    def after(self, module: nn.Module, inputs: tuple, output: object) -> None:
        self.counted_inside += self.counter.get_total_flops() - self._start
        self.macs += recurrent_macs(module, inputs[0])


def recurrent_macs(module: nn.Module, x: torch.Tensor | nn.utils.rnn.PackedSequence) -> int:
    """Multiply-adds of one forward call of an ``nn.RNNBase`` (input tensor or packed sequence)
    or ``nn.RNNCellBase`` (input [B, I] or [I]): ``gates * H * (I + H)`` per step, layer and
    direction (gates: LSTM 4, GRU 3, RNN 1)."""
    if isinstance(module, nn.RNNCellBase):
        rows = 1 if x.dim() == 1 else x.shape[0]
        size = module.hidden_size
        return rows * _CELL_GATES[type(module)] * size * (module.input_size + size)
    if not isinstance(module, nn.RNNBase):
        raise TypeError(f"not a recurrent module: {type(module).__name__}")
    if module.proj_size:
        raise NotImplementedError("LSTM projections (proj_size > 0) are not counted")
    if isinstance(x, nn.utils.rnn.PackedSequence):
        steps = x.data.shape[0]  # one row per (sequence, time step)
    else:
        steps = x.shape[0] if x.dim() == 2 else x.shape[0] * x.shape[1]
    size, directions = module.hidden_size, 2 if module.bidirectional else 1
    per_step = sum(
        directions * _GATES[module.mode] * size * (width + size)
        for width in [module.input_size] + [directions * size] * (module.num_layers - 1)
    )
    return steps * per_step
