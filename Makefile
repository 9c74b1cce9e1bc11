# vosbench — common tasks. `make help` lists them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

METHOD  ?= agnn
SWEEP   ?= agnn_K_N
DATA    ?= synthetic
PRESET  ?= tiny
TRAINER ?= cpu
WORKERS ?= 2

.PHONY: help install test test-full mutate lint bench sweep bench-eval bench-loader leaderboard clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	# W&B's sweep engine pins numpy<2 but runs with numpy 2 (vosbench sweep): installed apart
	$(BIN)/python -m pip install --quiet --no-deps "sweeps==0.3.0"
	$(BIN)/python -c "import torch, torchvision.ops, pytorch_lightning, pydensecrf.densecrf, wandb, sweeps"
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install vosbench (editable) with its dependencies

test: install  ## run the fast test suite (one thread per worker: the workers are the parallelism)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n $(WORKERS) -q

test-full: install  ## run every test, the slow ones too
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n $(WORKERS) -q -m ""

mutate: install  ## mutation testing (mutmut) of MODULE, default the metrics engine and AGNN's modules
	$(BIN)/python tools/mutate.py $(MODULE)

lint: install  ## check style and common bugs with ruff
	$(BIN)/ruff check src methods datamodules tests benchmarks tools

bench: install  ## train and score METHOD on DATA (arrives with the methods)
	$(BIN)/vosbench bench --method $(METHOD) --data $(DATA) --preset $(PRESET) --trainer $(TRAINER)

sweep: install  ## run the trials of configs/sweeps/SWEEP.yaml offline (vosbench sweep; again: go on)
	$(BIN)/vosbench sweep configs/sweeps/$(SWEEP).yaml

bench-eval: install  ## time `vosbench eval` against vos-benchmark (benchmarks/eval_speed.py)
	$(BIN)/python benchmarks/eval_speed.py --workers $(WORKERS)

bench-loader: install  ## decoded frames/s of the datamodules at 480p (benchmarks/loader_speed.py)
	$(BIN)/python benchmarks/loader_speed.py

leaderboard: install  ## tables of results/*.json beside the papers' numbers -> LEADERBOARD.md
	$(BIN)/vosbench leaderboard --output LEADERBOARD.md

clean:  ## remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .hypothesis .mutation
