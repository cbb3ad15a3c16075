"""The notebooks of notebooks/ execute headless on tiny sweeps of the presets they read, so a
change in the library that breaks one fails here."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from hydra_helpers import CONFIG_DIR, run_sweep

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = Path(CONFIG_DIR).parent / "notebooks"
CELL_TIMEOUT = 180  # seconds; the slowest cell here takes a few
# Tiny NeXtVLADs, three training steps per run (one epoch), every step logged; batches padded
# to the tiny set's longest video (80 frames) instead of 300, which all-frames views would fill
# with padding to dequantize.
SMALL_NEXTVLAD = [
    "model.backbone.clusters=4",
    "model.backbone.groups=4",
    "model.backbone.expansion=1",
    "model.backbone.hidden_size=16",
]
SHORT = ["+trainer.limit_train_batches=3", "trainer.log_every_n_steps=1", "data.max_frames=80"]
SWEEPS = {
    # Two samplers x two k: two points per line of GAP against k.
    "baselines": [
        "experiment=fewer_frames_baselines",
        "seed=0",
        *SMALL_NEXTVLAD,
        "data.sampler=uniform,first",
        "k=6,10",
    ],
    # A serial student (its teacher trained first, also what embeddings.ipynb reads) and a
    # parallel one.
    "students": [
        "experiment=fewer_frames_losses",
        "seed=0",
        *SMALL_NEXTVLAD,
        "distill=serial,parallel",
        "losses=rep_pred_ce",
        "k=6",
    ],
    # Two temperatures of a mixture of two NeXtVLADs (model=mix: so that the leaf overrides
    # fit the config Hydra composes before the variant's model), on 10 uniform frames: the
    # mixtures are the costliest runs here, and nothing in mod.ipynb needs every frame. The
    # classifiers' weight decay makes the runs log train/l2, the regularization loss curve.
    "mod": [
        "experiment=mod_temperature",
        "seed=0",
        "variant=mix_t0,mix_t20",
        "model=mix",
        "model.backbone.branching=[2]",
        "model.backbone.leaf.clusters=4",
        "model.backbone.leaf.groups=4",
        "model.backbone.leaf.hidden_size=16",
        "model.classifier_weight_decay=1e-4",
        "data.sampler=uniform",
        "k=10",
    ],
}


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory) -> dict[str, Path]:
    """Each sweep's multirun directory. The three run at once (each a train.py -m
    subprocess, mostly single-threaded on tiny data), on one shared synthetic set (its
    generation is locked: the first sweep generates it, the others wait)."""
    root = tmp_path_factory.mktemp("notebooks")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VIDISTILL_CACHE", str(root / "cache"))
        with ThreadPoolExecutor(len(SWEEPS)) as pool:
            futures = {
                name: pool.submit(
                    run_sweep, root / name, [*overrides, *SHORT], data_dir=root / "data"
                )
                for name, overrides in SWEEPS.items()
            }
            return {name: future.result() for name, future in futures.items()}


def execute(name: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> str:
    """Run notebooks/<name>.ipynb in a fresh python3 kernel from the notebooks folder (its
    parameters read from ``env``); a cell that raises fails the test with its error. Returns
    what the cells printed."""
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)  # the kernel inherits the environment
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as error:
        pytest.fail(f"{name}.ipynb: a cell raised:\n{error}", pytrace=False)
    outputs = [output for cell in notebook.cells for output in cell.get("outputs", [])]
    assert any("image/png" in output.get("data", {}) for output in outputs), "no figure drawn"
    return "".join(output.get("text", "") for output in outputs if output.output_type == "stream")


@pytest.mark.slow
def test_fewer_frames_notebook(sweeps, monkeypatch):
    runs = os.pathsep.join(str(sweeps[name]) for name in ("baselines", "students"))
    execute("fewer_frames", {"VIDISTILL_FEWER_FRAMES_RUNS": runs}, monkeypatch)


@pytest.mark.slow
def test_mod_notebook(sweeps, monkeypatch):
    env = {
        "VIDISTILL_MOD_RUNS": str(sweeps["mod"]),
        "VIDISTILL_MOD_CURVES_RUN": str(sweeps["mod"] / "0"),  # T = 0: no distillation term
    }
    printed = execute("mod", env, monkeypatch)
    # The regularization loss comes from the log, not from the checkpoint (the fallback).
    assert "regularization loss: train/l2 from the log" in printed


@pytest.mark.slow
def test_embeddings_notebook(sweeps, monkeypatch):
    execute("embeddings", {"VIDISTILL_EMBEDDINGS_RUN": str(sweeps["students"])}, monkeypatch)


def test_notebooks_are_committed_without_outputs():
    """Outputs belong to a run of the notebook, not to the repository."""
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        assert notebook.metadata.kernelspec.name == "python3", path.name
        for cell in notebook.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, path.name
