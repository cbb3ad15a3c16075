"""Mixtures of backbones and trees of mixtures (the MOD paper's MixNeXtVLAD and MODNeXtVLAD).

A :class:`Mixture` is itself a backbone, so mixtures nest without special cases: a mixture of
three NeXtVLADs is MixNeXtVLAD, a mixture of four such mixtures is the paper's two-level
MODNeXtVLAD, and deeper trees are built the same way (:func:`mixture_tree`).

Members computed together: an unplaced tree runs its leaves in groups of one architecture (all
twelve NeXtVLADs of MODNeXtVLAD at once), each group as one computation
(``Backbone.forward_together``: for NeXtVLADs, the parameters of each layer stacked along a member
axis at call time, the shared frames packed once), then mixes bottom-up with every gate reading
one shared mean of the frames. The modules, their parameter names, checkpoints, :func:`subtree`
and export are the same as for a tree run member by member, and so are the outputs, gradients
and BatchNorm statistics (to float32 round-off; dropout draws in the same order as long as all
leaves form one group). A placed mixture runs its members one by one (each unplaced sub-mixture
still runs its own leaves together).

Model parallelism (:func:`place`), as in the MOD paper: each member of a mixture (each sub-tree)
lives on a device of its own and sees the same full batch. The mixture's own gate stays with the
rest of the model, on the device of the input (the "home" device); :meth:`Mixture.forward` sends
frames and mask to each member's device and brings back only what the mixing and the losses
read: every node's logits, and each member's embedding once for the mixture's own.

Surviving device moves: PyTorch Lightning moves the whole LightningModule to its root device
(``module.to(device)`` when the strategy sets up), and so do users. Every such conversion
(``to``, ``cuda``, ``cpu``, ``float``, ``half``, ``to_empty``...) reaches the tensors through
``nn.Module._apply``, which a placed :class:`Mixture` overrides: its gate converts as asked,
while each placed member gets the conversion's dtype change but keeps its device. That covers
every path that moves a module, with no hook to call after Lightning's move and no copy to the
home device and back; it also means Lightning's ``module.cpu()`` at teardown leaves the members
on their GPUs. Placement is a plain attribute, not a buffer: state dicts have the same keys and
shapes placed or not, ``load_state_dict`` copies each tensor onto the device of the parameter it
fills, so a checkpoint of a placed model loads into an unplaced one and vice versa.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vidistill.devices import resolve_device
from vidistill.features import FEATURE_SIZE
from vidistill.models.base import Backbone, BackboneOutput, masked_mean
from vidistill.models.layers import TF_BN_EPS, TF_BN_MOMENTUM


class Mixture(Backbone):
    """Mixes the logits of ``members`` with gate weights computed from the video.

    Gate: masked mean of the input frames [B, D] -> BatchNorm -> Linear(D -> N) -> softmax, as in
    the MOD paper. The mixture's logits are ``sum_m w_m z_m`` [B, C]; its ``embedding`` is the
    concatenation of the members' embeddings, ``intermediate["gate"]`` the weights [B, N], and
    ``members`` the members' own outputs, which the online distillation loss walks.

    ``placement`` is None, or the device of each member once :func:`place` has put them there.

    Parameters: the members' plus ``2 D + (D + 1) N`` for the gate.
    """

    def __init__(
        self,
        members: Sequence[Backbone],
        feature_size: int = FEATURE_SIZE,
        bn_momentum: float = TF_BN_MOMENTUM,
        bn_eps: float = TF_BN_EPS,
    ):
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"a mixture needs at least 2 members, got {len(members)}")
        self.members = nn.ModuleList(members)
        self.gate_bn = nn.BatchNorm1d(feature_size, eps=bn_eps, momentum=bn_momentum)
        self.gate = nn.Linear(feature_size, len(members))
        self.embedding_size = sum(member.embedding_size for member in members)
        self.placement: tuple[torch.device, ...] | None = None

    def initialize_output_bias(self, log_odds: torch.Tensor) -> None:
        """Every member starts at the priors, so their gate-weighted mixture does too."""
        for member in self.members:
            member.initialize_output_bias(log_odds)

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> BackboneOutput:
        """frames [B, T, D], mask [B, T] -> logits [B, C], embedding [B, sum of the members' E].

        When placed, every member gets frames and mask on its own device, and the output keeps
        the unplaced contract on the input's device for what the mixing and the losses read:
        every node's ``logits`` (all the way down: the online distillation loss takes a BCE of
        each node against the labels and a KL between each parent and child) and this mixture's
        ``embedding``, for which each member's embedding [B, E_m] crosses once. The members' own
        ``embedding`` and ``intermediate`` tensors stay on the member's device: nothing reads
        them across members, and moving them would only add traffic.
        """
        mean = masked_mean(frames, mask)  # [B, D], what every gate reads
        if not _places_members(self):  # the leaves may run together (see the module docstring)
            return self._assemble(mean, iter(_run_together(list(leaves(self)), frames, mask)))
        if self.placement is None:  # only sub-mixtures are placed: each moves its members' inputs
            outputs = [member(frames, mask) for member in self.members]
            return self._mix(mean, outputs, [out.embedding for out in outputs])
        home = frames.device
        outputs, embeddings = [], []
        # Launches are asynchronous on CUDA, so the members run concurrently on their
        # devices as far as their own kernels let the host go on.
        for member, device in zip(self.members, self.placement, strict=True):
            out = member(_move(frames, device), _move(mask, device))
            outputs.append(_logits_to(out, home))
            embeddings.append(_move(out.embedding, home))
        return self._mix(mean, outputs, embeddings)

    def _assemble(
        self, mean: torch.Tensor, leaf_outputs: Iterator[BackboneOutput]
    ) -> BackboneOutput:
        """This mixture's output from the outputs of its leaves, taken from ``leaf_outputs`` in
        :func:`leaves` order."""
        outputs = [
            member._assemble(mean, leaf_outputs)
            if isinstance(member, Mixture)
            else next(leaf_outputs)
            for member in self.members
        ]
        return self._mix(mean, outputs, [out.embedding for out in outputs])

    def _mix(
        self, mean: torch.Tensor, outputs: list[BackboneOutput], embeddings: list[torch.Tensor]
    ) -> BackboneOutput:
        """Gate the members' logits: mean frames [B, D], the members' outputs and embeddings
        [B, E_m] (on this mixture's device) -> this mixture's output."""
        weights = F.softmax(self.gate(self.gate_bn(mean)), dim=-1)  # [B, N]
        logits = torch.stack([out.logits for out in outputs], 1)  # [B, N, C]
        return BackboneOutput(
            logits=(weights.unsqueeze(-1) * logits).sum(1),
            embedding=torch.cat(embeddings, 1),
            intermediate={"gate": weights},
            members=outputs,
        )

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True):
        """Every tensor conversion (``to``, ``cpu``, ``float``...) lands here; placed members
        keep their devices (see the module docstring)."""
        if self.placement is None or not recurse:
            return super()._apply(fn, recurse)
        for child in self.children():
            if child is self.members:
                for member, device in zip(self.members, self.placement, strict=True):
                    member._apply(_keeping_device(fn, device))
            else:
                child._apply(fn)
        return super()._apply(fn, recurse=False)


def place(model: Backbone, placement: Sequence[str | torch.device]) -> Mixture:
    """Put each member of the mixture ``model`` on its device, in place; returns ``model``.

    ``placement`` lists one device per member of ``model`` (the root): for MODNeXtVLAD [4, 3],
    ``["cuda:0", "cuda:1", "cuda:2", "cuda:3"]`` puts each mixture of 3 NeXtVLADs on its own
    GPU. A member may itself be a placed mixture (``place(subtree(model, (0,)), ...)``). The
    root's gate stays where the rest of the model goes (Lightning's root device), which is
    where the input must be. Later moves of the whole model (``model.to(...)``) leave the
    members where they were placed; the state dict is the same as the unplaced model's.

    Raises TypeError if ``model`` is not a :class:`Mixture` or ``placement`` is a single device,
    ValueError if ``placement`` does not list one device per member or names a device that
    does not exist here.
    """
    if not isinstance(model, Mixture):
        raise TypeError(f"only a mixture's members can be placed, got a {type(model).__name__}")
    if isinstance(placement, (str, torch.device)):
        raise TypeError(f"placement lists one device per member, got the single {placement!r}")
    if len(placement) != len(model.members):
        raise ValueError(
            f"placement lists {len(placement)} devices but the mixture has "
            f"{len(model.members)} members: give one device per member"
        )
    devices = tuple(
        resolve_device(spec, f"placement[{position}]") for position, spec in enumerate(placement)
    )
    for member, device in zip(model.members, devices, strict=True):
        member.to(device)
    model.placement = devices
    return model


def mixture_tree(
    leaf: Callable[[], Backbone],
    branching: Sequence[int],
    feature_size: int = FEATURE_SIZE,
    bn_momentum: float = TF_BN_MOMENTUM,
    bn_eps: float = TF_BN_EPS,
) -> Mixture:
    """A tree of mixtures: ``branching[0]`` children at the root, each a tree of
    ``branching[1:]``, down to ``leaf()`` backbones (each call builds a new, independent one).

    ``[3]`` is MixNeXtVLAD with ``leaf`` a NeXtVLAD, ``[4, 3]`` the MOD paper's MODNeXtVLAD (12
    leaves), ``[2, 2, 2]`` a depth-3 tree.
    """
    if not branching:
        raise ValueError("branching must list at least one level, e.g. [3] or [4, 3]")

    def build(levels: Sequence[int]) -> Backbone:
        if not levels:
            return leaf()
        return Mixture(
            [build(levels[1:]) for _ in range(levels[0])], feature_size, bn_momentum, bn_eps
        )

    return build(list(branching))


def member_path(value: Any) -> tuple[int, ...] | None:
    """A member path as given on a command line, normalized: ``None`` (the whole model),
    ``0``, ``0.0``, ``"0"`` or ``[0]`` (the root's first member), ``[1, 2]``... Integral
    floats count as integers (Hydra reads ``member=0.0`` as a float); anything else is a
    ValueError. Range checks need the model: :func:`subtree`."""
    if value is None:
        return None
    items = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]
    path = []
    for item in items:
        number = item
        if isinstance(item, str):
            try:
                number = float(item)
            except ValueError:
                number = None
        if isinstance(number, bool) or not isinstance(number, int | float) or number != int(number):
            raise ValueError(
                f"member={value!r}: a member path is a list of member indices from the root, "
                "e.g. 0, [0] or [1,2]"
            )
        path.append(int(number))
    return tuple(path)


def tree_shape(model: Backbone) -> str:
    """The shape of a mixture tree in words, for messages: ``"mixture of 4 mixtures of 3
    NeXtVLADs"``, or the class name of a model that is not a mixture."""
    members = getattr(model, "members", None)
    if not isinstance(members, nn.ModuleList):
        return type(model).__name__
    shapes = [_plural(tree_shape(member)) for member in members]
    inner = shapes[0] if len(set(shapes)) == 1 else "(" + ", ".join(shapes) + ")"
    return f"mixture of {len(members)} {inner}"


def _plural(shape: str) -> str:
    return (
        "mixtures" + shape.removeprefix("mixture") if shape.startswith("mixture ") else shape + "s"
    )


def subtree(model: Backbone, path: Any) -> Backbone:
    """The member of a mixture tree at ``path`` (member indices from the root, in any form
    :func:`member_path` takes), to use alone: ``None`` or ``()`` is the whole model, ``(0,)``
    the root's first member (in MixNeXtVLAD, one NeXtVLAD, the paper's "NeXtVLAD distill"),
    ``(1, 2)`` the third leaf of the second sub-mixture. A path the tree does not have is a
    ValueError naming the tree's shape."""
    path = member_path(path) or ()
    node = model
    for depth, index in enumerate(path):
        members = getattr(node, "members", None)
        if not isinstance(members, nn.ModuleList) or not 0 <= index < len(members):
            where = (
                f"the node at {list(path[:depth])} is a {type(node).__name__}, not a mixture"
                if not isinstance(members, nn.ModuleList)
                else f"index {index} is out of range for a mixture of {len(members)} at "
                f"{list(path[:depth])}"
            )
            raise ValueError(
                f"member path {list(path)}: {where} (the model is a {tree_shape(model)})"
            )
        node = members[index]
    return node


def _keeping_device(
    fn: Callable[[torch.Tensor], torch.Tensor], device: torch.device
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``fn`` for the tensors of a member placed on ``device``: applied as is when it leaves
    tensors on ``device`` (a dtype change, ``share_memory_``...), else reduced to its dtype.

    An empty probe tells which, without copying the member to another device and back.
    """

    def apply(tensor: torch.Tensor) -> torch.Tensor:
        probe = fn(torch.empty(0, dtype=tensor.dtype, device=device))
        if probe.device == device:
            return fn(tensor)
        return tensor.to(device, dtype=probe.dtype)

    return apply


def _move(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``tensor`` on ``device``; the same tensor, uncopied, if it is there already."""
    # Asynchronous only towards CUDA: a non-blocking copy to the host may be read before it lands.
    return tensor.to(device, non_blocking=device.type == "cuda")


def _logits_to(output: BackboneOutput, device: torch.device) -> BackboneOutput:
    """``output`` with the logits of every node of its tree moved to ``device``."""
    return dataclasses.replace(
        output,
        logits=_move(output.logits, device),
        members=[_logits_to(member, device) for member in output.members],
    )


def leaves(node: Backbone) -> Iterator[Backbone]:
    """The backbones at the leaves of a mixture tree, depth first."""
    if isinstance(node, Mixture):
        for member in node.members:
            yield from leaves(member)
    else:
        yield node


def _places_members(node: Backbone) -> bool:
    """Whether any mixture of the tree under ``node`` (itself included) is placed."""
    return isinstance(node, Mixture) and (
        node.placement is not None or any(_places_members(member) for member in node.members)
    )


def _run_together(
    backbones: list[Backbone], frames: torch.Tensor, mask: torch.Tensor
) -> list[BackboneOutput]:
    """The outputs of ``backbones`` on the same input, in order: backbones of one class and
    equal :meth:`~Backbone.together_key` run as one computation (``forward_together``), the
    others alone. Mixtures of leaves of one architecture thus run them all together."""
    groups: dict[Hashable, list[int]] = {}
    for index, backbone in enumerate(backbones):
        key = backbone.together_key()
        group = ("alone", index) if key is None else (type(backbone), key)
        groups.setdefault(group, []).append(index)
    outputs: list[BackboneOutput | None] = [None] * len(backbones)
    for indices in groups.values():
        members = [backbones[index] for index in indices]
        if len(members) == 1:  # its own forward, hooks included
            results = [members[0](frames, mask)]
        else:
            results = type(members[0]).forward_together(members, frames, mask)
        for index, result in zip(indices, results, strict=True):
            outputs[index] = result
    return outputs
