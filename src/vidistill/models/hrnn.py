"""Hierarchical RNN (H-RNN), the fewer-frames paper's recurrent teacher and student.

The frames a model sees are cut into ``b`` consecutive blocks; a lower LSTM (weights shared by all
blocks) encodes each block, and an upper LSTM reads the blocks' final states in order. The upper
final state is the video representation, classified by a mixture of experts.

Blocking
--------
Blocks are defined over each video's *valid* frames, not over the padded time axis: a video with
``n`` valid frames (in the order the mask gives them) has block ``j`` (0-based) made of frames
``floor(j n / b)`` to ``floor((j + 1) n / b) - 1``, so block sizes differ by at most one and every
block covers the same share ``1 / b`` of what the model sees. Each block is one sequence of the
lower LSTM, of exactly its frames: padded frames never enter an LSTM, so padding can never change
an output, and a video's output does not depend on the other videos of its batch. When ``n < b``
some blocks are empty: their state is zero (the LSTM's initial state, as TensorFlow's
``dynamic_rnn`` with a zero length gives) and the upper LSTM skips them, so it runs over
``min(n, b)`` steps.

Recurrence
----------
The weights live in ``nn.LSTM`` modules (PyTorch's layout, initialization and equations), but the
recurrence runs here on rows in packed order (time major, longest sequence first, as in a
``PackedSequence``): each layer's input part of the gates is one matmul over all rows, then only
the ``H x 4H`` recurrent product runs per step. On CPU, ``nn.LSTM`` on a ``PackedSequence`` is
slower (its backward zero-fills a full-size gradient at every step), and unpacked batches go to
oneDNN, which also computes the unneeded gradient of the frames. On GPU, cuDNN's fused kernels
may well beat this loop.

The authors' code instead split the padded 300-frame axis into 20 blocks of 15 frames, so a
140-frame video filled 10 blocks and its student (every 10th frame of the padded axis, 5 blocks
of 6) only 3; blocking over the valid frames keeps all blocks in use and makes the teacher's and
the student's blocks cover the same parts of the video.

Comparing teacher and student blocks
------------------------------------
``intermediate["blocks"]`` [B, b, 2 * layers * lower_size] holds the lower LSTM's final state of
every block. With blocks over valid frames, teacher block boundaries at ``floor(j n / b_t)`` for
``j`` a multiple of ``r = b_t / b_s`` coincide with the student's at ``floor(j' n / b_s)``, so when
the student's frames are sampled uniformly over the video's true length (vidistill's samplers),
student block ``j'`` covers the time span of teacher blocks ``r j'`` to ``r j' + r - 1`` (teacher 20
blocks, student 5: r = 4). An intermediate representation loss therefore compares
``student_blocks`` [B, b_s, D] with a reduction over each group of ``r`` teacher blocks of
``teacher_blocks.unflatten(1, (b_s, r))`` [B, b_s, r, D], e.g. its mean over dim 2, or its last
element (the block ending where the student's block ends). ``b_t`` must be a multiple of ``b_s``
and both models need the same ``lower_size`` and ``num_layers`` (else a learned projection).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vidistill.features import FEATURE_SIZE, RGB_SIZE
from vidistill.models.base import Backbone, BackboneOutput
from vidistill.models.layers import build_classifier, pack


class HRNN(Backbone):
    """frames [B, T, D] (rgb then audio), mask [B, T] -> logits [B, C].

    A lower ``num_layers``-layer LSTM (``lower_size`` cells, shared by the blocks) encodes each of
    the ``num_blocks`` blocks of valid frames (see the module docstring); its final state
    ``(c_1, h_1, ..., c_L, h_L)`` concatenated, ``2 L lower_size`` wide (4096 in the paper), is one
    step of an upper ``num_layers``-layer LSTM (``upper_size`` cells); the upper final state in the
    same layout, ``2 L upper_size`` wide, is ``embedding`` [B, 2 L upper_size]. Dropout on it, then
    the classifier (MoE with 2 experts by default). ``intermediate["blocks"]`` is
    [B, num_blocks, 2 L lower_size], zeros for empty blocks.

    Frames are L2-normalized over all ``D`` features first (``l2_normalize``), as the authors'
    training script did for both teacher and student. LSTM biases start at zero except the forget
    gate's (``forget_bias``, 1 as TensorFlow's ``BasicLSTMCell`` adds), weights at PyTorch's default
    ``U(-1/sqrt(H), 1/sqrt(H))`` (close to TensorFlow's Glorot at H = 1024). PyTorch LSTMs carry two
    bias vectors (``4 H`` parameters per layer more than TensorFlow's single one).

    Presets: ``conf/model/hrnn.yaml`` (CPU-sized) and ``hrnn_paper.yaml`` (the paper's).
    """

    export_fixed_frames = True

    def __init__(
        self,
        num_classes: int,
        num_blocks: int = 20,
        lower_size: int = 1024,
        upper_size: int = 1024,
        num_layers: int = 2,
        dropout: float = 0.0,
        classifier: str = "moe",
        num_mixtures: int = 2,
        feature_size: int = FEATURE_SIZE,
        l2_normalize: bool = True,
        forget_bias: float = 1.0,
    ):
        super().__init__()
        if num_blocks < 1:
            raise ValueError(f"HRNN needs at least one block, got num_blocks={num_blocks}")
        self.num_blocks, self.l2_normalize = num_blocks, l2_normalize
        self.lower = nn.LSTM(feature_size, lower_size, num_layers, batch_first=True)
        self.upper = nn.LSTM(2 * num_layers * lower_size, upper_size, num_layers, batch_first=True)
        for lstm in (self.lower, self.upper):
            _init_biases(lstm, forget_bias)
        self.dropout = nn.Dropout(dropout)
        self.embedding_size = 2 * num_layers * upper_size
        self.classifier = build_classifier(
            classifier, self.embedding_size, num_classes, num_mixtures
        )

    def paper_flops_per_frame(self) -> int:
        """The lower LSTM with its first layer's rgb inputs only:
        ``4 H (1024 + H) + (layers - 1) 4 H (2 H)`` (the upper LSTM, a per-block cost, is left
        out; see :mod:`vidistill.models.flops`)."""
        size, layers = self.lower.hidden_size, self.lower.num_layers
        return 4 * size * (RGB_SIZE + size) + (layers - 1) * 4 * size * 2 * size

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> BackboneOutput:
        if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            return self._forward_unrolled(frames, mask)
        batch, b = len(frames), self.num_blocks
        x = pack(frames, mask)  # [N, D], each video's valid frames in order
        if self.l2_normalize:
            x = F.normalize(x, dim=-1)
        lengths = mask.sum(1)  # [B]
        video = torch.arange(batch, device=x.device).repeat_interleave(lengths)  # [N]
        rank = (mask.cumsum(1) - 1)[mask]  # [N] position among the video's valid frames
        n = lengths[video]
        # Frame `rank` is in block j iff floor(j n / b) <= rank < floor((j + 1) n / b).
        block = ((rank + 1) * b - 1) // n
        offset = rank - block * n // b
        blocks = _final_states(self.lower, x, video * b + block, offset, batch * b)
        blocks = blocks.view(batch, b, -1)

        # The upper LSTM reads each video's non-empty blocks in order (all b when n >= b).
        nonempty = torch.zeros(batch * b, dtype=torch.bool, device=x.device)
        nonempty[video * b + block] = True
        nonempty = nonempty.view(batch, b)
        steps = (nonempty.cumsum(1) - 1)[nonempty]
        block_video = torch.arange(batch, device=x.device).repeat_interleave(nonempty.sum(1))
        embedding = _final_states(self.upper, blocks[nonempty], block_video, steps, batch)
        return BackboneOutput(
            logits=self.classifier(self.dropout(embedding)),
            embedding=embedding,
            intermediate={"blocks": blocks},
        )

    def _forward_unrolled(self, frames: torch.Tensor, mask: torch.Tensor) -> BackboneOutput:
        """:meth:`forward` as a fixed graph for tracing and export: the same blocks and
        equations, each block padded to ``ceil(T / b)`` steps, and a state that stops changing
        after a sequence's last step instead of rows leaving the batch. The batch size stays
        free; the recurrence is unrolled for this ``T``. Valid frames must come first in every
        row (as the readers give them)."""
        batch, steps, b = frames.shape[0], frames.shape[1], self.num_blocks
        x = F.normalize(frames, dim=-1) if self.l2_normalize else frames
        n = mask.sum(1, keepdim=True)  # [B, 1]
        j = torch.arange(b + 1, device=frames.device).unsqueeze(0)  # block boundaries
        bounds = j * n // b  # [B, b + 1]: block j is frames bounds[j] .. bounds[j + 1] - 1
        start, size = bounds[:, :-1], bounds[:, 1:] - bounds[:, :-1]  # [B, b]
        # The longest a block can be. Not -(-steps // b): traced, the sizes are graph values,
        # and ONNX's integer division truncates negative numbers toward zero.
        length = (steps + b - 1) // b
        s = torch.arange(length, device=frames.device)
        index = (start.unsqueeze(-1) + s).clamp(max=steps - 1)  # [B, b, L]
        rows = torch.gather(
            x.unsqueeze(1).expand(batch, b, steps, x.shape[-1]),
            2,
            index.unsqueeze(-1).expand(batch, b, length, x.shape[-1]),
        )  # [B, b, L, D]
        valid = s < size.unsqueeze(-1)  # [B, b, L]
        sequences = rows.reshape(batch * b, length, x.shape[-1])
        blocks = _final_states_unrolled(self.lower, sequences, valid.reshape(batch * b, length))
        blocks = blocks.view(batch, b, -1)
        embedding = _final_states_unrolled(self.upper, blocks, size > 0)
        return BackboneOutput(
            logits=self.classifier(self.dropout(embedding)),
            embedding=embedding,
            intermediate={"blocks": blocks},
        )


def _final_states_unrolled(lstm: nn.LSTM, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Final states of ``lstm`` over sequences x [S, L, I] whose steps ``valid`` [S, L] says
    are real, skipping the others (a skipped step leaves the state as it was): [S, 2 layers H]
    as :func:`_final_states` lays them out, zero for sequences without a valid step."""
    finals = []
    inputs = x
    for layer in range(lstm.num_layers):
        input_gates, w_hh = _input_gates(lstm, layer, inputs)  # [S, L, 4H]
        h = c = x.new_zeros(x.shape[0], lstm.hidden_size)
        outputs = []
        for step in range(x.shape[1]):
            h_next, c_next = _lstm_step(input_gates[:, step], h, c, w_hh)
            keep = valid[:, step].unsqueeze(1)
            h, c = torch.where(keep, h_next, h), torch.where(keep, c_next, c)
            outputs.append(h)
        inputs = torch.stack(outputs, 1)
        finals += [c, h]
    return torch.stack(finals, 1).flatten(1)


def _init_biases(lstm: nn.LSTM, forget_bias: float) -> None:
    """Zero biases except ``forget_bias`` on the forget gate (PyTorch gate order i, f, g, o)."""
    size = lstm.hidden_size
    with torch.no_grad():
        for name, parameter in lstm.named_parameters():
            if name.startswith("bias"):
                parameter.zero_()
                if name.startswith("bias_ih"):
                    parameter[size : 2 * size] = forget_bias


def _final_states(
    lstm: nn.LSTM,
    x: torch.Tensor,
    sequence: torch.Tensor,
    step: torch.Tensor,
    num_sequences: int,
) -> torch.Tensor:
    """Final states of ``lstm`` over variable-length sequences given as rows.

    Row ``r`` of ``x`` [R, I] is step ``step[r]`` of sequence ``sequence[r]`` (steps of a
    sequence are 0, 1, ..., its length - 1). Returns [num_sequences, 2 layers H], each row
    ``(c_1, h_1, ..., c_layers, h_layers)`` after the sequence's own last step; zero for
    sequences without rows. Rows are put in packed order (time major, longest sequence first,
    as a ``PackedSequence``), so nothing is padded and no sequence sees another's steps.
    """
    states = x.new_zeros(num_sequences, 2 * lstm.num_layers * lstm.hidden_size)
    if len(x) == 0:
        return states
    lengths = torch.bincount(sequence, minlength=num_sequences)
    order = torch.argsort(lengths, descending=True, stable=True)  # rank -> sequence
    rank = torch.empty_like(order)
    rank[order] = torch.arange(num_sequences, device=x.device)
    batch_sizes = torch.bincount(step)  # [T] sequences still running at each step
    packed = torch.empty_like(x)
    packed[(batch_sizes.cumsum(0) - batch_sizes)[step] + rank[sequence]] = x
    finals = []
    for layer in range(lstm.num_layers):
        packed, h, c = _lstm_layer(lstm, layer, packed, batch_sizes.tolist())
        finals += [c, h]
    states[order[: len(h)]] = torch.stack(finals, 1).flatten(1)
    return states


def _lstm_layer(
    lstm: nn.LSTM, layer: int, packed: torch.Tensor, batch_sizes: list[int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One layer of ``lstm`` (its weights, PyTorch's LSTM equations) over packed rows [R, I].

    Returns the outputs [R, H] in the same packed order and the final ``h``, ``c`` [S, H] of the
    S non-empty sequences, longest first.
    """
    input_gates, w_hh = _input_gates(lstm, layer, packed)  # [R, 4H]
    h = c = packed.new_zeros(batch_sizes[0], lstm.hidden_size)
    outputs, final_h, final_c = [], [], []
    for gates_x in input_gates.split(batch_sizes):
        running = len(gates_x)
        if running < len(h):  # the shortest sequences ended at the previous step
            final_h.append(h[running:])
            final_c.append(c[running:])
            h, c = h[:running], c[:running]
        h, c = _lstm_step(gates_x, h, c, w_hh)
        outputs.append(h)
    # Sequences that ended last are the longest, i.e. first in the packed order.
    final_h.append(h)
    final_c.append(c)
    return torch.cat(outputs), torch.cat(final_h[::-1]), torch.cat(final_c[::-1])


def _input_gates(lstm: nn.LSTM, layer: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The input part of layer ``layer``'s gates for every step at once, x [..., I] ->
    [..., 4H] (one large matmul instead of one per step), and the layer's recurrent weights."""
    w_ih, w_hh, b_ih, b_hh = (
        getattr(lstm, f"{name}_l{layer}")
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    )
    return F.linear(x, w_ih, b_ih + b_hh), w_hh


def _lstm_step(
    input_gates: torch.Tensor, h: torch.Tensor, c: torch.Tensor, w_hh: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of PyTorch's LSTM equations (gate order i, f, g, o): the next ``h``, ``c``
    [S, H] from the step's input gates [S, 4H] and the current state."""
    i, f, g, o = (input_gates + F.linear(h, w_hh)).chunk(4, 1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c
