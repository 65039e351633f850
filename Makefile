# Two commands for a new machine: `make demo` and `make test`. Both create (or reuse) the
# environment first. The virtual environment lives outside the clone, keyed on the dependency
# list, so CI and fresh clones reuse the ~6 GB install instead of rebuilding it every run.

PYTHON ?= python3
VENV_ROOT ?= $(HOME)/.cache/beyondvis
ENV_KEY := $(shell $(PYTHON) tools/env_key.py)
VENV ?= $(VENV_ROOT)/venv-$(ENV_KEY)
BIN := $(VENV)/bin
STAMP := $(VENV)/.beyondvis-installed
EXTRAS ?= dev,text

# Real data for the data-backed tests and benchmarks (skipped when absent).
ifneq ($(wildcard ../shared/data),)
export BEYONDVIS_DATA ?= $(abspath ../shared/data)
endif

.PHONY: env demo test lint format bench clean-env serve

# No file prerequisites: the venv path already encodes the dependency list, and a fresh clone
# has new mtimes that must not force a rebuild.
$(STAMP):
	@echo ">> creating environment $(VENV)"
	rm -rf "$(VENV)"
	$(PYTHON) -m venv "$(VENV)"
	$(BIN)/python -m pip install -q --upgrade "pip>=23" "setuptools>=77" wheel
	$(BIN)/python -m pip install -q -c requirements/constraints.txt -e ".[$(EXTRAS)]"
	touch "$(STAMP)"

# The editable install is refreshed on every run because the cached environment may point at
# another clone of the repository (CI clones afresh each time); it takes a few seconds.
env: $(STAMP)
	@$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | grep -v '^WARNING: Location' || true
	@$(BIN)/python -c "import beyondvis; print('beyondvis', beyondvis.__version__, 'in', '$(VENV)')"

demo: env
	$(BIN)/beyondvis demo

# the web app on http://127.0.0.1:8000 (Ctrl-C stops); e.g. make serve SERVE_ARGS="--index INDEX"
serve: env
	$(BIN)/beyondvis serve $(SERVE_ARGS)

test: env
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

lint: env
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: env
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: env
	for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean-env:
	rm -rf "$(VENV)"
