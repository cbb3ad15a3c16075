"""Which device a user's setting means: the one resolver behind ``device=`` (prediction,
localization) and mixture ``placement``, so ``cuda:1`` on a one-GPU machine is refused the same
way everywhere."""

from __future__ import annotations

import torch


def resolve_device(spec: str | torch.device, setting: str = "device") -> torch.device:
    """``auto`` -> CUDA when torch sees it, else the CPU; any other value must name a device
    usable here, returned as tensors report it (``cuda`` -> ``cuda:<current>``). ValueError
    naming ``setting`` otherwise."""
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        # Allocating nothing is the one check that works for every device type; the errors
        # differ by type (not compiled in, no such ordinal, bad string), hence the three kinds.
        return torch.empty(0, device=spec).device
    except (RuntimeError, AssertionError, ImportError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(
            f"{setting} = {str(spec)!r} is not a usable device here: {reason}"
        ) from error
