"""Export a trained model (a student, a teacher, one member of a mixture) to TorchScript and ONNX
for serving, and check the exported graph against PyTorch on the same inputs.

The exported model takes the frames as stored in YT8M TFRecords and returns probabilities:

    frames       uint8 [B, T, 1152]  quantized rgb (1024) + audio (128), valid frames first
    mask         bool  [B, T]        which frames are real (padding is False)
    -> probabilities float32 [B, C]

Dequantization (the official formula) happens inside the graph, padding set to 0.0, so a server
feeds the decoded bytes directly. The batch size B is free in both formats, and so is the number of
frames T except for an unrolled recurrence (H-RNN: ``fixed_frames`` in the export record); a
k-frame student is meant to be fed its own k frames (see ``frames`` in the record), a student
with a learned frame selector (``frames.sampler`` = ``learned``) every frame, from which the
graph selects its k.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vidistill.atomic import atomic_path, atomic_write
from vidistill.data.frames import FrameSelection
from vidistill.data.quantization import dequantize_coefficients
from vidistill.features import FEATURE_SIZE
from vidistill.lit.checkpoints import load_model
from vidistill.models.mixture import member_path, subtree

log = logging.getLogger(__name__)

FORMATS = ("torchscript", "onnx")
SUFFIXES = {"torchscript": ".pt", "onnx": ".onnx"}
# Largest |exported - PyTorch| probability accepted by the check (float32 round-off is ~1e-7).
TOLERANCE = 1e-4


class QuantizedInputModel(nn.Module):
    """A backbone behind the official dequantization and a sigmoid: uint8 frames [B, T, D] and
    mask [B, T] -> probabilities [B, C]. With a learned frame ``selector`` the inputs are every
    frame of the videos, and the graph picks the k frames the backbone sees (each bin's best,
    as in evaluation)."""

    def __init__(
        self,
        backbone: nn.Module,
        max_quantized_value: float = 2.0,
        min_quantized_value: float = -2.0,
        selector: nn.Module | None = None,
    ):
        super().__init__()
        self.backbone = backbone
        self.selector = selector
        self.scale, self.bias = dequantize_coefficients(max_quantized_value, min_quantized_value)

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        values = frames.to(torch.float32) * self.scale + self.bias
        values = values * mask.unsqueeze(-1).to(torch.float32)
        if self.selector is not None:
            choice = self.selector(values, mask)
            values, mask = choice.gather(values), choice.mask
        return torch.sigmoid(self.backbone(values, mask).logits)


def export(
    checkpoint: str | os.PathLike,
    output: str | os.PathLike,
    formats: Sequence[str] = FORMATS,
    member: Sequence[int] | None = None,
    frames: int | None = None,
    overwrite: bool = False,
    opset: int = 17,
) -> dict[str, Any]:
    """Export ``checkpoint`` (or its mixture ``member``) to ``<output>.pt`` (TorchScript) and
    ``<output>.onnx``, verify each against the PyTorch model and write ``<output>.json`` (the
    check's numbers, the frames the model expects, input and output names); returns that
    record.

    ``frames`` is the T of the example inputs (default: the most frames the checkpoint's frame
    selection gives a video: its k, or max_frames for all frames); the check also runs other
    batch sizes and frame counts, so a graph that kept an example's shape fails it. Existing files are refused unless ``overwrite``; ValueError if
    an exported model differs from PyTorch by more than ``TOLERANCE``.
    """
    targets = _targets(output, formats, overwrite)
    model, info = load_model(checkpoint)
    backbone = subtree(model.backbone, member)
    member = member_path(member) or None
    wrapped = QuantizedInputModel(backbone, selector=getattr(model, "selector", None)).eval()
    selection = FrameSelection.from_dict(info["data"]["frames"])
    length = frames or selection.frames_per_video
    fixed = any(getattr(module, "export_fixed_frames", False) for module in backbone.modules())
    example = example_inputs(2, length)
    checks = [example, example_inputs(5, length)]
    if not fixed:
        checks.append(example_inputs(3, max(1, length // 2)))
    record: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "member": list(member) if member else None,
        "frames": selection.to_dict(),
        "num_classes": info["data"].get("num_classes"),
        "inputs": {"frames": "uint8 [B, T, 1152]", "mask": "bool [B, T]"},
        # An unrolled recurrence (H-RNN) keeps the example's T: pad or cut inputs to it.
        "fixed_frames": length if fixed else None,
        "outputs": {"probabilities": "float32 [B, C]"},
        "exports": {
            name: _export_checked(name, wrapped, example, checks, path, opset, fixed)
            for name, path in targets.items()
        },
    }
    atomic_write(f"{output}.json", json.dumps(record, indent=2))
    return record


def _targets(output: str | os.PathLike, formats: Sequence[str], overwrite: bool) -> dict[str, Path]:
    """The file of each format (``<output>.pt``, ``<output>.onnx``), its directory made;
    ValueError for an unknown format, FileExistsError for a file (or the record) that exists
    unless ``overwrite``."""
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not formats:
        raise ValueError(f"formats={list(formats)}: choose from {', '.join(FORMATS)}")
    targets = {name: Path(f"{output}{SUFFIXES[name]}") for name in formats}
    for path in [*targets.values(), Path(f"{output}.json")]:
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=true to replace it")
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    return targets


def _export_checked(
    name: str,
    wrapped: nn.Module,
    example: tuple[torch.Tensor, torch.Tensor],
    checks: list[tuple[torch.Tensor, torch.Tensor]],
    path: Path,
    opset: int,
    fixed: bool,
) -> dict[str, Any]:
    """Write one format and run it against PyTorch on every input of ``checks``; ValueError
    beyond ``TOLERANCE``."""
    run = _EXPORTERS[name](wrapped, example, path, opset, fixed)
    difference = max(_max_difference(wrapped, run, inputs) for inputs in checks)
    log.info("%s: %s, max |exported - PyTorch| = %.3g", name, path, difference)
    if not difference <= TOLERANCE:
        raise ValueError(
            f"{path}: the exported model differs from PyTorch by {difference:.3g} "
            f"(more than {TOLERANCE})"
        )
    return {"path": str(path), "max_abs_difference": difference}


def example_inputs(batch: int, frames: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random quantized frames uint8 [batch, frames, 1152] and a mask [batch, frames] whose
    rows have different lengths (1 to ``frames`` valid frames, valid first).

    Byte values are drawn around 128 with the spread of real features (the synthetic set's
    bytes: mean 127, standard deviation 24): uniform bytes lie far outside what a trained model
    has seen, and its large activations there amplify float round-off (up to 1e-3 between
    PyTorch and onnxruntime for a trained NeXtVLAD, against 5e-7 on real frames)."""
    generator = torch.Generator().manual_seed(seed + 1000 * batch + frames)
    values = torch.normal(128.0, 24.0, (batch, frames, FEATURE_SIZE), generator=generator)
    values = values.round().clamp(0, 255)
    lengths = torch.linspace(frames, 1, batch).round().long().clamp(1, frames)
    mask = torch.arange(frames).unsqueeze(0) < lengths.unsqueeze(1)
    return values.to(torch.uint8), mask


def _export_torchscript(
    model: nn.Module, example: tuple, path: Path, opset: int, fixed_frames: bool
):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(model, example, check_trace=False)
    with atomic_path(path) as temporary:
        traced.save(str(temporary))
    loaded = torch.jit.load(str(path))
    return lambda frames, mask: loaded(frames, mask)


def _export_onnx(model: nn.Module, example: tuple, path: Path, opset: int, fixed_frames: bool):
    try:
        import onnxruntime
    except ImportError:
        raise ImportError(
            "ONNX export is checked with onnxruntime: pip install -e '.[export]'"
        ) from None
    axes = {0: "batch"} if fixed_frames else {0: "batch", 1: "time"}
    dynamic = {"frames": axes, "mask": axes}
    with warnings.catch_warnings(), atomic_path(path) as temporary:
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            example,
            str(temporary),
            input_names=["frames", "mask"],
            output_names=["probabilities"],
            dynamic_axes={**dynamic, "probabilities": {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run(frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        feeds = {"frames": frames.numpy(), "mask": mask.numpy()}
        return torch.from_numpy(session.run(None, feeds)[0])

    return run


_EXPORTERS = {"torchscript": _export_torchscript, "onnx": _export_onnx}


@torch.inference_mode()
def _max_difference(model: nn.Module, run, inputs: tuple[torch.Tensor, torch.Tensor]) -> float:
    expected = model(*inputs)
    got = run(*inputs)
    if got.shape != expected.shape:
        raise ValueError(f"exported output {tuple(got.shape)} != PyTorch {tuple(expected.shape)}")
    return (got - expected).abs().max().item()
