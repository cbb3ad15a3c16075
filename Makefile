# vidistill: `make train` and `make test` are the whole set-up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
STAMP  := $(VENV)/.installed
ARGS   ?=
# The torch build: a pip requirement (TORCH) and the package index it comes from (TORCH_INDEX;
# empty: pip's own). torch goes first and pinned, and vidistill's own torch>=2.1 keeps it (left
# to the package, pip would resolve the newest torch). The build is the index's: a CPU wheel
# from local disk on the project's machines, while PyPI's Linux wheel is a CUDA build (GBs of
# nvidia-* libraries); TORCH_INDEX=https://download.pytorch.org/whl/cpu gives the small CPU one.
TORCH       ?= torch==2.13.0
TORCH_INDEX ?=
# The CUDA build of `make install-gpu`: a tag of https://download.pytorch.org/whl/ (cu126, cu128...).
CUDA        ?= cu128
# What `make install` adds to vidistill; the tests need all of these (they skip what is missing).
EXTRAS      ?= dev,notebooks,sweeps,parquet,export,mlflow,wandb
# `make notebooks`: each executed against results/, written as HTML next to it.
NOTEBOOKS   ?= notebooks/fewer_frames.ipynb notebooks/mod.ipynb notebooks/embeddings.ipynb

.PHONY: install install-gpu train test bench claims claims-quick notebooks lint format clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH)"$(if $(TORCH_INDEX), --index-url $(TORCH_INDEX))
	$(PIP) install -q -e ".[$(EXTRAS)]"
	touch $(STAMP)

# The CUDA build of torch from PyTorch's index, in place of whatever build the environment has
# (pip would keep an installed torch of the same version); later installs keep it.
install-gpu:
	test ! -x $(PY) || $(PIP) uninstall -q -y torch
	$(MAKE) --always-make install TORCH_INDEX=https://download.pytorch.org/whl/$(CUDA)

train: $(STAMP)
	$(PY) train.py $(ARGS)

test: $(STAMP)
	$(PY) -m pytest $(ARGS)

bench: $(STAMP)
	$(PY) bench/run.py $(ARGS)

# The claims report (results/<study>/): STUDY=fewer_frames or mod; resumes where it stopped.
STUDY ?= fewer_frames
claims: $(STAMP)
	$(PY) -m vidistill.claims run $(STUDY) $(ARGS)

# One seed and the smallest arms of both studies, into results/<study>/quick/.
claims-quick: $(STAMP)
	$(PY) -m vidistill.claims run fewer_frames --quick $(ARGS)
	$(PY) -m vidistill.claims run mod --quick $(ARGS)

# The notebooks run against the committed evidence (results/); the .ipynb files keep no outputs,
# the HTML copies (notebooks/<name>.html) show them. embeddings.ipynb needs a serial run's
# checkpoints, which results/ does not commit: `make claims` trains them.
notebooks: $(STAMP)
	$(PY) -m nbconvert --to html --execute --ExecutePreprocessor.timeout=3600 $(NOTEBOOKS)

lint: $(STAMP)
	$(PY) -m ruff check src tests bench train.py eval.py predict.py flops.py localize.py export.py
	$(PY) -m ruff format --check src tests bench train.py eval.py predict.py flops.py localize.py export.py

format: $(STAMP)
	$(PY) -m ruff format src tests bench train.py eval.py predict.py flops.py localize.py export.py
	$(PY) -m ruff check --fix src tests bench train.py eval.py predict.py flops.py localize.py export.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build src/*.egg-info outputs multirun logs
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
