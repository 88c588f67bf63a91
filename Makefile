# gsvkit: `make tour` runs the main job, `make test` the test suite. Both create .venv and install on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# torch is pinned through constraints.txt (an unpinned torch pulls GBs of CUDA wheels); extra pip options, e.g. an
# index with CPU wheels of torch 2.13.0 for your platform, go in PIP_ARGS.
PIP_ARGS ?=

.PHONY: install tour test clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check $(PIP_ARGS) -c constraints.txt -e ".[dev]"
	touch $(STAMP)

tour: $(STAMP)
	$(VENV)/bin/gsv tour

test: $(STAMP)
	$(PY) -m pytest

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
