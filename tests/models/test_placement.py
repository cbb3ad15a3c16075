"""Model-parallel placement of mixture trees (``models.mixture.place``), on a CPU-only machine.

There is one real device here, so each property is checked where it can be observed:
- placed on ``cpu``, a tree runs the placed forward path (its moves are no-ops) and must compute
  what the unplaced tree computes, outputs and gradients, to 1e-5 (``model_reference``): an
  unplaced tree runs all its leaves together, a placed one each sub-tree's leaves on their own,
  the same sums in other orders;
- ``meta`` is a second device for conversions (``.to("meta")`` works from cpu): a placed tree
  moved there keeps its members, and their values, on cpu;
- what crosses devices in the forward pass is checked by recording the moves.
A forward and backward across two real devices needs CUDA and is not run here.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from functools import partial

import pytest
import torch
from hydra.utils import instantiate

from hydra_helpers import compose_config
from model_reference import assert_close, assert_same_outputs, assert_same_state, nodes
from vidistill.distill import OnlineMixtureDistillation
from vidistill.lit import VideoClassifier
from vidistill.models import Mixture, build_backbone, mixture_tree
from vidistill.models import mixture as mixture_module
from vidistill.models.mixture import place, subtree

NUM_CLASSES = 5
LEAF = partial(build_backbone, "nextvlad", NUM_CLASSES, clusters=4, expansion=1, hidden_size=16)
CPU = torch.device("cpu")


def tree(branching: Sequence[int], seed: int = 0) -> Mixture:
    torch.manual_seed(seed)
    return mixture_tree(LEAF, branching)


def twins(branching: Sequence[int], placement: Sequence[str | torch.device]):
    """The same weights twice: unplaced, and placed on ``placement``."""
    unplaced = tree(branching)
    return unplaced, place(copy.deepcopy(unplaced), placement)


def batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """frames [4, 6, 1152] with zero padding, mask [4, 6], labels [4, C]."""
    generator = torch.Generator().manual_seed(seed)
    mask = torch.arange(6) < torch.tensor([6, 3, 1, 5])[:, None]
    frames = (torch.rand(4, 6, 1152, generator=generator) * 4 - 2) * mask.unsqueeze(-1)
    labels = (torch.rand(4, NUM_CLASSES, generator=generator) < 0.4).float()
    return frames, mask, labels


def member_tensors(model: Mixture) -> dict[str, torch.Tensor]:
    return {
        name: tensor
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]
        if name.startswith("members.")
    }


@pytest.mark.parametrize(
    ("branching", "placement"),
    [
        ([3], ["cpu", "cpu", "cpu"]),
        ([4, 3], [CPU, "cpu", CPU, "cpu"]),
        ([2, 2, 2], [torch.device("cpu"), "cpu"]),
    ],
)
def test_placed_tree_computes_what_the_unplaced_one_does(branching, placement):
    unplaced, placed = twins(branching, placement)
    assert placed.placement == (CPU,) * len(placement)
    frames, mask, _ = batch()
    assert_same_outputs(placed.eval()(frames, mask), unplaced.eval()(frames, mask))


def test_gradients_and_batchnorm_statistics_match_the_unplaced_tree():
    unplaced, placed = twins([2, 2, 2], ["cpu", "cpu"])
    frames, mask, labels = batch()
    loss = OnlineMixtureDistillation(temperature=2.0)
    losses = []
    for model in (unplaced, placed):
        torch.manual_seed(7)  # the same dropout draws: members run in the same order
        output = model.train()(frames, mask)
        total = sum(loss(output, {"labels": labels}).values())
        total.backward()
        losses.append(total)
    assert_close(losses[1], losses[0])
    assert all(parameter.grad is not None for parameter in unplaced.parameters())
    assert_same_state(placed, unplaced)


def test_moving_the_tree_leaves_placed_members_on_their_device():
    control = tree([2, 2]).to("meta")  # unplaced, the same move takes everything along
    assert {p.device.type for p in control.parameters()} == {"meta"}

    placed = place(tree([2, 2]), ["cpu", "cpu"])
    before = {name: tensor.clone() for name, tensor in member_tensors(placed).items()}
    placed.to("meta")
    assert placed.gate.weight.is_meta and placed.gate_bn.running_mean.is_meta
    for name, tensor in member_tensors(placed).items():
        assert tensor.device == CPU and torch.equal(tensor, before[name]), name

    # A move with a dtype change gives the placed members the dtype, on their device.
    placed.to("meta", torch.float64)
    assert placed.gate.weight.dtype == torch.float64 and placed.gate.weight.is_meta
    for name, tensor in member_tensors(placed).items():
        assert tensor.device == CPU, name
        if tensor.is_floating_point():
            assert tensor.dtype == torch.float64, name
    assert placed.members[0].members[1].classifier.linear.weight.dtype == torch.float64


def test_lightning_module_moves_leave_placed_members_on_their_device():
    """What the strategy does at setup: ``lightning_module.to(root_device)``."""
    backbone = place(tree([2, 2]), ["cpu", "cpu"])
    module = VideoClassifier(backbone, NUM_CLASSES).to("meta")
    assert module.device.type == "meta" and backbone.gate.weight.is_meta
    assert {t.device for t in member_tensors(backbone).values()} == {CPU}


def test_conversions_keep_the_placement_and_the_outputs():
    unplaced, placed = twins([2, 2], ["cpu", torch.device("cpu")])
    placed.cpu().to("cpu").half().float().to(CPU, torch.float32).double()
    assert placed.placement == (CPU, CPU)
    assert placed.members[1].members[0].classifier.linear.weight.dtype == torch.float64
    frames, mask, _ = batch()
    unplaced.half().float().double()  # the same rounding through half precision
    assert_same_outputs(
        placed.eval()(frames.double(), mask), unplaced.eval()(frames.double(), mask)
    )


# Loading into the gate moved to meta copies nothing, and torch says so.
@pytest.mark.filterwarnings("ignore:.*copying from a non-meta parameter:UserWarning")
def test_state_dicts_move_between_placed_and_unplaced_trees():
    unplaced, placed = twins([2, 2], ["cpu", "cpu"])
    assert placed.state_dict().keys() == unplaced.state_dict().keys()
    frames, mask, _ = batch()
    expected = unplaced.eval()(frames, mask)

    fresh_unplaced = tree([2, 2], seed=1)
    fresh_unplaced.load_state_dict(placed.state_dict())
    assert_same_outputs(fresh_unplaced.eval()(frames, mask), expected)

    fresh_placed = place(tree([2, 2], seed=2), ["cpu", "cpu"])
    fresh_placed.load_state_dict(unplaced.state_dict())
    assert_same_outputs(fresh_placed.eval()(frames, mask), expected)

    # Loading fills each member where it is: after a move to meta, the members are still on cpu.
    fresh_placed.to("meta").load_state_dict(tree([2, 2], seed=3).state_dict())
    loaded = member_tensors(fresh_placed)
    for name, tensor in member_tensors(tree([2, 2], seed=3)).items():
        assert loaded[name].device == CPU and torch.equal(loaded[name], tensor), name
    assert fresh_placed.gate.weight.is_meta


def test_nested_placements_compose():
    unplaced = tree([2, 2, 2])
    placed = place(copy.deepcopy(unplaced), ["cpu", "cpu"])
    place(subtree(placed, (1,)), ["cpu", CPU])
    place(subtree(placed, (1, 0)), ["cpu", "cpu"])
    frames, mask, _ = batch()
    assert_same_outputs(placed.eval()(frames, mask), unplaced.eval()(frames, mask))
    placed.to("meta")
    assert placed.gate.weight.is_meta
    assert {t.device for t in member_tensors(placed).values()} == {CPU}


def test_only_inputs_logits_and_member_embeddings_cross_devices(monkeypatch):
    moves: list[tuple[torch.Tensor, torch.device]] = []

    def recording_move(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
        moves.append((tensor, device))
        return tensor.to(device)  # on one device, the same tensor: identities are kept

    monkeypatch.setattr(mixture_module, "_move", recording_move)
    frames, mask, _ = batch()
    tree([2, 2]).eval()(frames, mask)
    assert moves == [], "an unplaced tree moves nothing"

    output = place(tree([2, 2]), ["cpu", "cpu"]).eval()(frames, mask)
    inputs = [(id(t), d) for t, d in moves if t is frames or t is mask]
    assert inputs == [(id(frames), CPU), (id(mask), CPU)] * 2, "the inputs, to each member"
    back_home = {id(t) for t, _ in moves if t is not frames and t is not mask}
    expected = {id(node.logits) for member in output.members for node in nodes(member)}
    expected |= {id(member.embedding) for member in output.members}
    assert back_home == expected
    assert len(moves) == 4 + len(expected), "every tensor crosses once"


def test_bad_placements_are_refused_with_the_reason():
    model = tree([2, 2])
    with pytest.raises(ValueError, match="placement lists 3 devices but the mixture has 2"):
        place(model, ["cpu", "cpu", "cpu"])
    with pytest.raises(TypeError, match="got a NeXtVLAD"):
        place(LEAF(), ["cpu"])
    with pytest.raises(TypeError, match="one device per member, got the single 'cpu'"):
        place(model, "cpu")
    with pytest.raises(ValueError, match=r"placement\[1\] = 'gpu:0' is not a usable device"):
        place(model, ["cpu", "gpu:0"])
    missing = f"cuda:{torch.cuda.device_count()}"  # one past the last GPU: never there
    with pytest.raises(ValueError, match=rf"placement\[0\] = '{missing}' is not a usable device"):
        place(model, [missing, "cpu"])
    assert model.placement is None
    assert {p.device for p in model.parameters()} == {CPU}


def test_the_mixture_presets_take_a_placement(tmp_path):
    small = [
        "num_classes=5",
        "model.backbone.leaf.clusters=4",
        "model.backbone.leaf.hidden_size=16",
    ]
    cfg = compose_config(tmp_path, ["model=mod", *small, "model.placement=[cpu,cpu,cpu,cpu]"])
    assert instantiate(cfg.model).backbone.placement == (CPU,) * 4
    for preset in ("mix", "mod", "mod_paper"):
        cfg = compose_config(tmp_path, [f"model={preset}"])
        assert cfg.model.placement is None, preset
    with pytest.raises(Exception, match="placement"):  # only mixtures have members to place
        compose_config(tmp_path, ["model=nextvlad", "model.placement=[cpu]"])
