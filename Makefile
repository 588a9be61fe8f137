# Two commands for a fresh machine: `make demo` (the main job) and `make test` (the tests).
# The virtualenv lives outside the clone, keyed on the dependency files, so repeat runs are quick.
SHELL := /bin/bash
PYTHON ?= python3
DEPS_HASH := $(shell cat pyproject.toml requirements-nodeps.txt | sha256sum | cut -c1-12)
VENV ?= $(HOME)/.cache/panther/venv-$(DEPS_HASH)
BIN := $(VENV)/bin
export PATH := $(BIN):$(PATH)
export PANTHER_HOME ?= $(HOME)/.cache/panther
DEMO_DIR ?= $(PANTHER_HOME)/demo
PYTEST_ARGS ?= -n 2 --dist loadgroup --durations=25

.PHONY: install test lint images demo demo-stop clean-venv

$(VENV)/.deps-installed: pyproject.toml requirements-nodeps.txt
	@echo "== creating $(VENV) (first run installs torch & co; later runs reuse it)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip "setuptools>=77" wheel
	$(BIN)/pip install -q -e '.[test]'
	$(BIN)/pip install -q --no-deps -r requirements-nodeps.txt
	touch $@

# The editable install points the cached venv at THIS clone (CI clones elsewhere each run).
install: $(VENV)/.deps-installed
	@if [ "$$(cat $(VENV)/.project-path 2>/dev/null)" != "$(CURDIR)" ]; then \
		$(BIN)/pip install -q --no-deps --no-build-isolation -e . && echo "$(CURDIR)" > $(VENV)/.project-path; fi
	@$(BIN)/python -c "import numpy, sys; v = numpy.__version__; sys.exit(0 if v.startswith('1.') else f'numpy {v}: tritonserver needs numpy<2')"

lint: install
	$(BIN)/ruff check .

test: install lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The container images, from this repository alone (deploy/images/build.py, docs/DEPLOY.md): a Debian
# base made with debootstrap, then Kafka, the worker and Triton (CPU). Needs a Docker engine; cached.
images:
	$(PYTHON) deploy/images/build.py

# The detector live (deploy/local/demo.sh): trains a small model the first time (~1 min), then runs the
# Procfile with honcho until Ctrl-C. DEMO_RATE=N sets the live producer's records/s (default 20).
demo: install
	bash deploy/local/demo.sh "$(DEMO_DIR)"

# Stops a broker/server left behind by a demo that was killed (Ctrl-C stops them by itself).
demo-stop: install
	-panther kafka stop
	-panther triton stop

clean-venv:
	rm -rf $(VENV)
