"""Self-describing checkpoints: the model and frame-selection config travel inside every file.

``train()`` adds :class:`RunConfigInCheckpoint` to the trainer's callbacks, so each checkpoint
Lightning writes carries ``checkpoint["vidistill"] = {"model": ..., "data": ..., "version": 2}``,
``data`` being ``{"frames": FrameSelection.to_dict(), "mode": ..., "num_classes": ...}``
(version 1 entries, whose frame-selection keys sat flat in ``data``, are read in this layout).
:func:`load_model` rebuilds the model from that entry alone (no training config needed), and
:func:`check_resume_compatible` refuses to resume a run from a checkpoint of another architecture
before any training starts.
"""

from __future__ import annotations

import os
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate

from vidistill.data.frames import FrameSelection

CHECKPOINT_KEY = "vidistill"
FORMAT_VERSION = 2
# Version 1 kept the frame selection's keys flat in ``data``; read as version 2.
READ_VERSIONS = (1, FORMAT_VERSION)
# The keys of a version 1 ``data`` entry that are not the frame selection's.
_DATA_KEYS = ("mode", "num_classes")

# Keys listed per category in a mismatch error; the rest are counted.
_SHOWN_KEYS = 5

# State-dict entries of the training objective (a teacher trained alongside, a projection):
# needed to resume training, not to use the model.
_OBJECTIVE_PREFIX = "objective."


class RunConfigInCheckpoint(pl.Callback):
    """Writes the resolved model config and the data's frame selection into every checkpoint.

    Args:
        model_config: the resolved ``cfg.model`` as plain containers (``_target_`` and all).
        frames: the frames the model sees (``seed`` included: the random sampler's evaluation
            frames are fixed by (seed, video id)).
        mode: the data's mode (``frame``, ``segment``, ``video``).
        num_classes: the label vocabulary's size.
        overrides: the Hydra job's command-line overrides (None outside Hydra), so that
            resuming a run directory can tell whether it still holds the same job.
    """

    def __init__(
        self,
        model_config: dict[str, Any],
        frames: FrameSelection,
        mode: str,
        num_classes: int,
        overrides: list[str] | None = None,
    ):
        self.model_config = model_config
        self.data_config = {"frames": frames.to_dict(), "mode": mode, "num_classes": num_classes}
        self.overrides = overrides

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint[CHECKPOINT_KEY] = {
            "model": self.model_config,
            "data": self.data_config,
            "overrides": self.overrides,
            "version": FORMAT_VERSION,
        }


def read_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """A Lightning checkpoint as a dict; ValueError naming the file if it is not one."""
    # weights_only: checkpoints hold tensors and plain containers only, so nothing in a
    # downloaded file gets to run code while loading.
    checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"{path}: not a Lightning checkpoint (no 'state_dict' entry)")
    return checkpoint


def run_config(checkpoint: dict[str, Any], path: str | os.PathLike) -> dict[str, Any]:
    """The ``vidistill`` entry of a checkpoint read from ``path`` (ValueError if absent), in
    the layout of ``FORMAT_VERSION`` whatever version wrote it."""
    entry = checkpoint.get(CHECKPOINT_KEY)
    if entry is None:
        raise ValueError(
            f"{path}: the checkpoint has no '{CHECKPOINT_KEY}' entry (the model config), so the "
            "model cannot be rebuilt from it; it was not written by vidistill's train()"
        )
    if entry.get("version") not in READ_VERSIONS:
        raise ValueError(
            f"{path}: '{CHECKPOINT_KEY}' entry version {entry.get('version')!r}, this vidistill "
            f"reads versions {', '.join(map(str, READ_VERSIONS))}"
        )
    if entry["version"] == 1:
        data = entry.get("data") or {}
        frames = {key: value for key, value in data.items() if key not in _DATA_KEYS}
        rest = {key: data[key] for key in _DATA_KEYS if key in data}
        entry = {**entry, "data": {**rest, "frames": frames}, "version": FORMAT_VERSION}
    return entry


def load_model(
    checkpoint_path: str | os.PathLike, map_location: Any = "cpu"
) -> tuple[pl.LightningModule, dict[str, Any]]:
    """Rebuild the model a checkpoint was trained as and load its weights strictly.

    Returns the model (in eval mode) and the checkpoint's ``vidistill`` entry (``model``,
    ``data``, ``version``; ``FrameSelection.from_dict(info["data"]["frames"])`` the frames the
    model saw) with the checkpoint's ``epoch`` and ``global_step`` added. The
    training objective's state (a distillation teacher, projections) and the model-parallel
    placement are left out.
    Raises ValueError naming the file if the checkpoint has no stored config or its weights do
    not fit the rebuilt model.
    """
    checkpoint = read_checkpoint(checkpoint_path, map_location)
    entry = run_config(checkpoint, checkpoint_path)
    # The devices a model was trained across need not exist where it is used; the trainer
    # that evaluates it puts it on its own device.
    model = instantiate({**entry["model"], "placement": None})
    state_dict = {
        key: value
        for key, value in checkpoint["state_dict"].items()
        if not key.startswith(_OBJECTIVE_PREFIX)
    }
    _raise_on_mismatch(model, state_dict, checkpoint_path, entry["model"])
    model.load_state_dict(state_dict, strict=True)
    model.eval()
    info = {
        **entry,
        "epoch": checkpoint.get("epoch"),
        "global_step": checkpoint.get("global_step"),
    }
    return model, info


def load_backbone(
    checkpoint_path: str | os.PathLike, backbone_config: Any | None = None
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The trained backbone of a checkpoint (a distillation teacher), in eval mode, and the
    checkpoint's ``vidistill`` entry (``model``, ``data``: how it was trained), read once.

    ``backbone_config`` (a ``_target_`` config) is the architecture the caller expects: the
    weights must fit it exactly, else ValueError naming the file and what differs. ``None``
    rebuilds the architecture the checkpoint was trained as.
    """
    if backbone_config is None:
        model, info = load_model(checkpoint_path)
        return model.backbone, info
    checkpoint = read_checkpoint(checkpoint_path)
    backbone = instantiate(backbone_config)
    _load_backbone_state(backbone, checkpoint, checkpoint_path)
    return backbone.eval(), run_config(checkpoint, checkpoint_path)


def load_backbone_weights(backbone: torch.nn.Module, checkpoint_path: str | os.PathLike) -> None:
    """Copy a checkpoint's backbone weights into ``backbone`` (a pretrained start, a teacher):
    they must fit exactly, else ValueError naming the file and what differs."""
    _load_backbone_state(backbone, read_checkpoint(checkpoint_path), checkpoint_path)


def _load_backbone_state(
    backbone: torch.nn.Module, checkpoint: dict[str, Any], checkpoint_path: str | os.PathLike
) -> None:
    prefix = "backbone."
    state_dict = {
        key[len(prefix) :]: value
        for key, value in checkpoint["state_dict"].items()
        if key.startswith(prefix)
    }
    stored_model = (checkpoint.get(CHECKPOINT_KEY) or {}).get("model")
    _raise_on_mismatch(backbone, state_dict, checkpoint_path, stored_model)
    backbone.load_state_dict(state_dict, strict=True)


def stored_overrides(checkpoint_path: str | os.PathLike) -> list[str] | None:
    """The Hydra overrides of the job that wrote the checkpoint (None if not recorded)."""
    return (read_checkpoint(checkpoint_path).get(CHECKPOINT_KEY) or {}).get("overrides")


def check_resume_compatible(model: torch.nn.Module, checkpoint_path: str | os.PathLike) -> None:
    """Raise ValueError naming the file if its weights do not fit ``model``.

    Lightning would only find out after setting up data and trainer, with a raw
    ``load_state_dict`` traceback; this check runs before any of that.
    """
    checkpoint = read_checkpoint(checkpoint_path)
    stored_model = (checkpoint.get(CHECKPOINT_KEY) or {}).get("model")
    _raise_on_mismatch(model, checkpoint["state_dict"], checkpoint_path, stored_model)


def _raise_on_mismatch(
    model: torch.nn.Module,
    state_dict: dict[str, torch.Tensor],
    path: str | os.PathLike,
    stored_model: dict[str, Any] | None,
) -> None:
    expected = model.state_dict()
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    mismatched = [
        f"{key} {tuple(state_dict[key].shape)} vs {tuple(value.shape)}"
        for key, value in expected.items()
        if key in state_dict and state_dict[key].shape != value.shape
    ]
    if not (missing or unexpected or mismatched):
        return
    problems = [
        _listing(title, keys)
        for title, keys in (
            ("missing from the checkpoint", missing),
            ("not in the model", unexpected),
            ("shape in checkpoint vs model", mismatched),
        )
        if keys
    ]
    trained_as = f" (trained as {_describe(stored_model)})" if stored_model else ""
    raise ValueError(
        f"{path}: the checkpoint{trained_as} does not fit the configured model "
        f"{type(model).__name__}; a checkpoint of another architecture or another num_classes?\n"
        + "\n".join(problems)
    )


def _listing(title: str, keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOWN_KEYS])
    more = f" and {len(keys) - _SHOWN_KEYS} more" if len(keys) > _SHOWN_KEYS else ""
    return f"  {title}: {shown}{more}"


def _describe(model_config: dict[str, Any]) -> str:
    """``Target(backbone=Target)``, from the resolved model config's ``_target_`` entries."""
    name = str(model_config.get("_target_", "?")).rsplit(".", 1)[-1]
    backbone = model_config.get("backbone")
    if isinstance(backbone, dict) and "_target_" in backbone:
        name += f"(backbone={str(backbone['_target_']).rsplit('.', 1)[-1]})"
    num_classes = model_config.get("num_classes")
    return name if num_classes is None else f"{name}, num_classes={num_classes}"
