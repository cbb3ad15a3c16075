"""The GPU training path, exercised on the CPU: trainer=gpu's settings, the loader options they
turn on (pinned memory, persistent workers that still shuffle and resume per epoch), bf16
autocast training, and compile=true with its fallback."""

from __future__ import annotations

import csv
import itertools
import logging
import math
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hydra import compose, initialize_config_dir
from torch import nn

from hydra_helpers import CONFIG_DIR, NEXTVLAD, compose_config
from preemption_helpers import SignalAt, fit_resumable
from vidistill.data import FrameSelection, YT8MDataset
from vidistill.data.datamodule import YT8MDataModule
from vidistill.data.loader import EpochLoader
from vidistill.lit import VideoClassifier
from vidistill.runs import compilation, train
from vidistill.runs.compilation import compile_backbone


def _trainer_on(device: str) -> SimpleNamespace:
    """What the data module reads of a trainer to resolve ``auto``: its root device."""
    return SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(device)))


def test_trainer_gpu_trains_in_bf16_and_the_loader_options_default_to_auto():
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=["trainer=gpu", "data=yt8m"])
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.precision == "bf16-mixed"
    assert cfg.data.pin_memory == "auto" and cfg.data.persistent_workers == "auto"
    assert cfg.data.prefetch_factor == 2
    assert cfg.compile is False


def test_auto_pins_memory_and_keeps_workers_on_cuda_only(shards):
    directory, _ = shards
    files = str(directory / "*.tfrecord")
    data = YT8MDataModule(train_files=files, num_classes=10, num_workers=2)
    data.trainer = _trainer_on("cuda")
    on_gpu = {
        "num_workers": 2,
        "pin_memory": True,
        "persistent_workers": True,
        "prefetch_factor": 2,
    }
    assert data.loader_options() == on_gpu
    data.trainer = _trainer_on("cpu")
    assert data.loader_options() == {**on_gpu, "pin_memory": False, "persistent_workers": False}
    # Without workers the DataLoader takes neither worker option.
    data = YT8MDataModule(train_files=files, num_classes=10, num_workers=0, pin_memory=True)
    assert data.loader_options() == {"num_workers": 0, "pin_memory": True}
    with pytest.raises(ValueError, match="true, false or auto"):
        YT8MDataModule(train_files=files, num_classes=10, pin_memory="yes").loader_options()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned memory needs a CUDA device")
def test_batches_arrive_pinned_for_a_cuda_trainer(shards):
    directory, _ = shards
    data = YT8MDataModule(train_files=str(directory / "*.tfrecord"), num_classes=10, num_workers=2)
    data.trainer = _trainer_on("cuda")
    options = data.loader_options()
    data.trainer = None  # the loader's epoch without a fit loop
    data.setup("fit")
    loader = EpochLoader(data.datasets["train"], epoch=lambda: 0, seed=0, **options)
    assert loader.pin_memory and loader.persistent_workers
    try:
        batch = next(iter(loader))
    finally:
        _shut_down(loader)
    assert all(v.is_pinned() for v in batch.values() if isinstance(v, torch.Tensor))


def _dataset(directory: Path) -> YT8MDataset:
    return YT8MDataset(
        str(directory / "*.tfrecord"),
        num_classes=10,
        batch_size=3,
        train=True,
        shuffle_buffer=4,
        num_workers=2,
        frames=FrameSelection(sampler="random", k=4, seed=5),
    )


def _ids(batches) -> list[list[str]]:
    return [list(batch["ids"]) for batch in batches]


def _shut_down(loader: EpochLoader) -> None:
    # As Lightning does at the end of fit: the workers ignore SIGTERM (see datasets.py), so a
    # persistent worker left to the interpreter's exit would hold it up.
    if loader._iterator is not None:
        loader._iterator._shutdown_workers()


def test_persistent_workers_read_every_epoch_and_resume_mid_epoch(shards):
    """Workers that outlive a pass read the next pass's epoch (its shuffle and random frames);
    a position saved mid-epoch resumes in persistent workers as in fresh ones, and the next
    epoch starts from its beginning."""
    directory, _ = shards
    expected = {
        epoch: _ids(
            EpochLoader(_dataset(directory), epoch=lambda e=epoch: e, seed=0, num_workers=2)
        )
        for epoch in (0, 1, 2)
    }
    assert expected[1] != expected[2]
    epoch, taken = [0], []
    loader = EpochLoader(
        _dataset(directory),
        epoch=lambda: epoch[0],
        seed=0,
        consumed=lambda: len(taken),
        num_workers=2,
        persistent_workers=True,
    )
    try:
        for epoch[0] in (0, 1):
            taken = _ids(loader)
            assert taken == expected[epoch[0]]
        epoch[0] = 2
        iterator = iter(loader)
        taken = _ids(itertools.islice(iterator, 3))
        next(iterator)  # Lightning's prefetch
        state = loader.state_dict()
    finally:
        _shut_down(loader)
    epoch, taken = [2], taken
    resumed = EpochLoader(
        _dataset(directory),
        epoch=lambda: epoch[0],
        seed=0,
        num_workers=2,
        persistent_workers=True,
    )
    resumed.load_state_dict(state)
    try:
        assert taken + _ids(resumed) == expected[2]
        epoch[0] = 1
        assert _ids(resumed) == expected[1]
    finally:
        _shut_down(resumed)


def _losses(run_dir: Path) -> list[float]:
    with open(run_dir / "csv" / "metrics.csv") as f:
        return [float(row["train/loss"]) for row in csv.DictReader(f) if row.get("train/loss")]


def test_a_bf16_mixed_run_on_the_cpu_trains_and_checkpoints(tmp_path):
    """trainer=gpu's precision on the CPU (autocast to bf16), with persistent workers: finite
    losses, a checkpoint, metrics."""
    cfg = compose_config(
        tmp_path,
        [
            *NEXTVLAD,
            "+trainer.precision=bf16-mixed",  # trainer=cpu leaves it to Lightning
            "trainer.max_epochs=2",
            "trainer.log_every_n_steps=1",
            "data.num_workers=2",
            "data.persistent_workers=true",
            "test=false",
        ],
    )
    train(cfg)
    losses = _losses(tmp_path / "run")
    assert losses and all(math.isfinite(loss) for loss in losses)
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()


class _Backbone(nn.Module):
    """[B, 8] -> [B, 3], with a forward of its own (dynamo skips torch.nn containers' frames)."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = _Backbone()


class _Counting:
    """A dynamo backend that runs the captured graphs as they are and counts them."""

    def __init__(self) -> None:
        self.graphs = 0

    def __call__(self, graph, example_inputs):
        self.graphs += 1
        return graph.forward


def test_compiling_in_place_keeps_the_checkpoint_keys_both_ways():
    torch.manual_seed(0)
    compiled, plain = _Tiny(), _Tiny()
    backend = _Counting()
    assert compile_backbone(compiled, backend=backend)
    x = torch.randn(4, 8)
    compiled.backbone(x).sum().backward()  # a training step's forward and backward
    assert backend.graphs == 1  # it did run compiled
    assert compiled.state_dict().keys() == plain.state_dict().keys()
    assert not any("_orig_mod" in key for key in compiled.state_dict())
    plain.load_state_dict(compiled.state_dict())  # compiled run -> uncompiled run
    again = _Tiny()
    compile_backbone(again, backend="eager")
    again.load_state_dict(plain.state_dict())  # and back
    for model in (plain, again):
        model.eval()
    assert torch.equal(plain.backbone(x), again.backbone(x))


def test_a_backend_failing_at_the_first_call_falls_back_with_a_warning(caplog):
    def broken(graph, example_inputs):
        raise RuntimeError("no kernels today")

    torch._dynamo.reset()
    model, reference = _Tiny().eval(), _Tiny().eval()
    reference.load_state_dict(model.state_dict())
    assert compile_backbone(model, backend=broken)
    x = torch.randn(4, 8)
    with caplog.at_level(logging.WARNING, logger=compilation.__name__):
        out = model.backbone(x)
    assert torch.equal(out, reference.backbone(x))
    assert "runs uncompiled" in caplog.text and "no kernels today" in caplog.text
    assert model.backbone._compiled_call_impl is None  # uncompiled from then on


def test_no_c_compiler_or_a_raising_torch_compile_leaves_the_model_uncompiled(monkeypatch, caplog):
    monkeypatch.setattr(compilation.shutil, "which", lambda name: None)
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.delenv("CXX", raising=False)
    model = _Tiny()
    with caplog.at_level(logging.WARNING, logger=compilation.__name__):
        assert not compile_backbone(model)  # inductor
    assert "no C compiler" in caplog.text
    assert model.backbone._compiled_call_impl is None
    monkeypatch.undo()

    def refuse(*args, **kwargs):
        raise RuntimeError("Python 3.99 is not supported")

    monkeypatch.setattr(compilation.torch, "compile", refuse)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=compilation.__name__):
        assert not compile_backbone(model, backend="eager")
    assert "torch.compile raised RuntimeError: Python 3.99" in caplog.text


def test_a_compiled_run_checkpoints_under_the_uncompiled_names(tmp_path):
    """compile=true through train.py (the eager backend: no kernels built on this CPU); the
    checkpoint loads into an uncompiled model of the same config. The logistic model: tracing
    NeXtVLAD (its per-video sums break the graph, packed frame counts change every batch) took
    47 s here even with the eager backend."""
    common = ["model=logistic", "data.sampler=uniform", "k=3", "trainer.max_epochs=1", "test=false"]
    train(compose_config(tmp_path, [*common, "compile=true", "compile_backend=eager"]))
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    assert not any("_orig_mod" in key for key in state["state_dict"])
    cfg = compose_config(
        tmp_path,
        [*common, "pretrained=" + str(tmp_path / "run/checkpoints/last.ckpt")],
        run="uncompiled",
    )
    train(cfg)
    assert (tmp_path / "uncompiled" / "metrics.json").is_file()


@pytest.mark.slow
def test_inductor_compiles_a_small_backbone_on_the_cpu():
    """A real inductor compile (C++ kernels), where a C compiler is installed: forward and
    backward, equal to the uncompiled model."""
    if compilation.cannot_compile("inductor"):
        pytest.skip(compilation.cannot_compile("inductor"))
    torch._dynamo.reset()
    torch.manual_seed(0)
    model, reference = _Tiny(), _Tiny()
    reference.load_state_dict(model.state_dict())
    assert compile_backbone(model)
    x = torch.randn(4, 8)
    out = model.backbone(x)
    out.sum().backward()
    assert model.backbone._compiled_call_impl is not None  # it did compile
    torch.testing.assert_close(out, reference.backbone(x), rtol=1e-4, atol=1e-5)


def _fit(directory: Path, shards: Path, callbacks=(), ckpt_path=None) -> VideoClassifier:
    """Three epochs of a small NeXtVLAD over 21 videos, two persistent workers of 10 and 11
    in batches of 4 (none of a single video, which BatchNorm refuses)."""
    _, model = fit_resumable(
        directory,
        shards,
        epochs=3,
        batch_size=4,
        num_workers=2,
        persistent_workers=True,
        before=callbacks,
        ckpt_path=ckpt_path,
    )
    return model


def test_a_fit_with_persistent_workers_resumes_mid_epoch_exactly(tmp_path, shards):
    """Stopped in the second of three epochs and resumed: the weights of a fit never stopped,
    so the resumed pass and the next epoch's (the same workers) read what they should."""
    directory, _ = shards
    straight = _fit(tmp_path / "straight", directory)
    with pytest.raises(SystemExit):
        _fit(tmp_path / "stopped", directory, [SignalAt(signal.SIGTERM, epoch=1, batch=2)])
    resumed = _fit(tmp_path / "stopped", directory, ckpt_path=tmp_path / "stopped" / "last.ckpt")
    for name, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name
