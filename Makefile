# Two entry points (see README Quickstart): `make run` and `make test`. Both set up .venv on first use.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat setup.py | sha1sum | cut -c1-12)
PYTHON ?= $(shell command -v python3.11 || command -v python3)

.PHONY: install run test lint

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU build of torch first: a plain dependency on torch would pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	# ONNX Runtime (the default embedding backend) is a base dependency; torch above serves its one-time
	# export of the model and TY_EMBED_BACKEND=sentence-transformers.
	$(PY) -m pip install -q -e ".[dev]"
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

run: install
	mkdir -p .dagster_home
	cp -n deploy/quickstart/dagster.yaml .dagster_home/dagster.yaml || true
	DAGSTER_HOME=$(CURDIR)/.dagster_home TY_SOURCES=$${TY_SOURCES:-sample} HF_HUB_OFFLINE=1 \
		$(VENV)/bin/dagster dev -m ty_pipeline -h 127.0.0.1 -p 3000

lint: install
	$(VENV)/bin/ruff check .
	# The layering contracts in pyproject.toml [tool.importlinter] (README "Layout").
	$(VENV)/bin/lint-imports
	# Types of the package, configured in pyproject.toml [tool.mypy].
	$(VENV)/bin/mypy

# Two pytest workers (pytest-xdist): most tests wait on loopback servers, databases and subprocesses, so
# two workers on two cores halve the suite. `loadgroup` keeps each `xdist_group` (the browser test's one
# webserver) on one worker. The 25 slowest tests are listed at the end: the suite must stay under 10 minutes.
test: install lint
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -p no:cacheprovider -n 2 --dist loadgroup --durations=25
