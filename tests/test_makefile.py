"""The Makefile's targets: which torch build ``make install`` and ``make install-gpu`` ask pip
for, that the install covers the extras the tests need, that ``make notebooks`` writes each
notebook's HTML next to it and leaves the notebook itself without outputs, and that ``make
train`` says where it trains before it does."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hydra_helpers import CONFIG_DIR, NEXTVLAD, TINY_DATA

ROOT = Path(CONFIG_DIR).parent
# Take the environment running the tests as installed: make does not remake its stamp.
STAMP_IS_OLD = "-o.venv/.installed"

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="no make on this machine")


def make_env() -> dict[str, str]:
    """This environment less what an outer make passes down (``make test`` runs these tests):
    its flags and level would change what the inner make does and prints."""
    return {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}


def make(*args: str, dry_run: bool = True) -> str:
    """``make [-n] args`` in the checkout; its standard output (AssertionError on failure)."""
    command = ["make", *(["-n"] if dry_run else []), *args]
    result = subprocess.run(
        command, cwd=ROOT, env=make_env(), capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def torch_line(commands: str) -> str:
    """The command that installs torch (the one before vidistill's own ``-e .`` install)."""
    (line,) = [line for line in commands.splitlines() if re.search(r"install -q \"torch", line)]
    return line


def test_install_takes_the_torch_requirement_and_index_it_is_given(tmp_path):
    # A venv that does not exist yet: make shows every step of a fresh install.
    venv = f"VENV={tmp_path / 'venv'}"
    default = make("install", venv)
    assert torch_line(default).endswith('install -q "torch==2.13.0"')  # pinned, pip's own index
    chosen = make("install", venv, "TORCH=torch==2.12.1", "TORCH_INDEX=https://example.org/cpu")
    assert torch_line(chosen).endswith(
        'install -q "torch==2.12.1" --index-url https://example.org/cpu'
    )
    # torch is installed before vidistill, whose own requirement (torch>=2.1) then keeps it.
    lines = chosen.splitlines()
    assert lines.index(torch_line(chosen)) < next(
        i for i, line in enumerate(lines) if "install -q -e" in line
    )


def test_install_gpu_takes_torch_from_the_cuda_index(tmp_path):
    venv = f"VENV={tmp_path / 'venv'}"
    commands = make("install-gpu", venv)
    assert torch_line(commands).endswith(
        'install -q "torch==2.13.0" --index-url https://download.pytorch.org/whl/cu128'
    )
    # An installed torch of the same version would satisfy pip: it is removed first.
    lines = commands.splitlines()
    uninstall = next(i for i, line in enumerate(lines) if "uninstall -q -y torch" in line)
    assert uninstall < lines.index(torch_line(commands))
    other = make("install-gpu", venv, "CUDA=cu126", "TORCH=torch==2.12.1")
    assert torch_line(other).endswith(
        'install -q "torch==2.12.1" --index-url https://download.pytorch.org/whl/cu126'
    )


def test_install_has_every_extra_the_tests_use(tmp_path):
    """Tests skip what is not installed (the trackers, the launchers, the notebooks...): an
    extra missing from ``make install`` would silently test less in CI."""
    commands = make("install", f"VENV={tmp_path / 'venv'}")
    (installed,) = re.findall(r'install -q -e "\.\[([^]]*)\]"', commands)
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    extras = set(config["options.extras_require"])
    # tensorboard is an optional logger no test uses; gcs and s3 are protocol packages for
    # remote shards, which the tests serve over HTTP and fsspec's memory filesystem (and whose
    # absence they check gives an error naming the extra); everything else is tested.
    assert set(installed.split(",")) == extras - {"tensorboard", "gcs", "s3"}


def test_make_notebooks_writes_html_next_to_each_notebook(tmp_path):
    """The target run for real on a small notebook: its HTML copy appears beside it with the
    executed cell's output, and the notebook itself stays without outputs."""
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("nbconvert")
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell('print("executed", 6 * 7)')],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}},
    )
    path = tmp_path / "tiny.ipynb"
    nbformat.write(notebook, path)
    before = path.read_bytes()
    make("notebooks", f"NOTEBOOKS={path}", f"PY={sys.executable}", STAMP_IS_OLD, dry_run=False)
    html = (tmp_path / "tiny.html").read_text()
    assert "executed 42" in html  # the cell ran and its output is on the page
    assert path.read_bytes() == before


@pytest.mark.slow
def test_make_train_prints_its_device_and_run_directory_before_training(tmp_path):
    run_dir = tmp_path / "run"
    overrides = [
        *TINY_DATA,
        *NEXTVLAD,
        "trainer.max_epochs=1",
        "test=false",
        f"paths.root_dir={tmp_path}",
        f"paths.data_dir={tmp_path / 'data'}",
        f"hydra.run.dir={run_dir}",
    ]
    result = subprocess.run(
        ["make", "train", f"PY={sys.executable}", STAMP_IS_OLD, "ARGS=" + " ".join(overrides)],
        cwd=ROOT,
        # Unbuffered, one stream: the lines keep the order in which they were written.
        env={**make_env(), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    lines = result.stdout.splitlines()
    device = lines.index("training on cpu (1 device, precision 32-true)")
    assert lines[device + 1] == f"run directory: {run_dir}"
    # Before Lightning's model summary, the first thing fit() shows, and the final metrics.
    summary = next(i for i, line in enumerate(lines) if "Total params" in line)
    metrics = next(i for i, line in enumerate(lines) if line.startswith("val/gap "))
    assert device < summary < metrics
