# vidistill: `make train` and `make test` are the whole set-up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed
ARGS   ?=

.PHONY: install train test bench claims claims-quick lint format clean

install: $(STAMP)

# torch goes first and pinned: an unpinned resolve of the package would pull a multi-GB CUDA build.
$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH)"
	$(PIP) install -q -e ".[dev,notebooks,sweeps,parquet,export]"
	touch $(STAMP)

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

lint: $(STAMP)
	$(PY) -m ruff check src tests bench train.py eval.py predict.py flops.py localize.py export.py
	$(PY) -m ruff format --check src tests bench train.py eval.py predict.py flops.py localize.py export.py

format: $(STAMP)
	$(PY) -m ruff format src tests bench train.py eval.py predict.py flops.py localize.py export.py
	$(PY) -m ruff check --fix src tests bench train.py eval.py predict.py flops.py localize.py export.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build src/*.egg-info outputs multirun logs
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
