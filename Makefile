# ftkit developer tasks. `make test` is the project's test command (CI: .ci/run).
SHELL := /bin/bash

VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# Interpreter used only to create the venv: python3.11 if present, else python3.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
# Re-install when any of these change.
STAMP  := $(VENV)/.ftkit-installed
REQS   := requirements/lock.txt requirements/nodeps.txt pyproject.toml
# Extra pytest options, e.g. `make test PYTEST_ARGS="-m 'not slow' -x"`.
PYTEST_ARGS ?=
# JupyterLab refuses to start as root without --allow-root.
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: .venv venv lab test lock clean distclean

.venv venv: $(STAMP)

# Exact pins only, so this works with or without /etc/xdg/pip constraints
# (torch==2.14.1 / torchvision==0.29.1 satisfy the local cap when it is there).
$(STAMP): $(REQS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -U pip
	$(PIP) install -r requirements/lock.txt
	$(PIP) install --no-deps -r requirements/nodeps.txt
	$(PIP) install --no-deps -e .
	touch $@

lab: $(STAMP)
	$(PY) -m ipykernel install --user --name ftkit --display-name "Python (ftkit)"
	$(VENV)/bin/jupyter lab notebooks/ $(ALLOW_ROOT)

# Whole suite on both cores (pytest-xdist; the browser tests share one worker and one JupyterLab).
# tests/test_notebooks.py executes every notebook in the smoke profile under both frameworks and
# grades three with nbgrader. XDIST=0 runs everything in one process.
XDIST ?= 2
test: $(STAMP)
	FTKIT_PROFILE=smoke $(PY) -m pytest $(if $(filter 0,$(XDIST)),,-n $(XDIST) --dist loadgroup) $(PYTEST_ARGS) tests

# Regenerate requirements/lock.txt from the current venv (keeps the header comments;
# --all keeps setuptools/wheel, which torch/astunparse need; drops pip, ftkit itself
# and the --no-deps packages of requirements/nodeps.txt).
lock:
	{ grep '^#' requirements/lock.txt; $(PIP) freeze --all --exclude-editable | grep -v -e ' @ ' -e '^-e' -e '^pip==' \
	  | grep -viE "^($$(grep -v '^#' requirements/nodeps.txt | sed 's/==.*//' | paste -sd'|' -)|ftkit)=="; } > requirements/lock.txt.new
	mv requirements/lock.txt.new requirements/lock.txt

clean:
	rm -rf .pytest_cache build dist *.egg-info tests/artifacts
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
