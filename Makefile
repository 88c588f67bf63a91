# gsvkit: `make tour` runs the main job, `make test` the test suite. Both create .venv and install on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# torch is pinned through constraints.txt (an unpinned torch pulls GBs of CUDA wheels); extra pip options, e.g. an
# index with CPU wheels of torch 2.13.0 for your platform, go in PIP_ARGS.
PIP_ARGS ?=

.PHONY: install tour test browser clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check $(PIP_ARGS) -c constraints.txt -e ".[dev]"
	touch $(STAMP)

tour: $(STAMP)
	$(VENV)/bin/gsv tour

# Unit tests and every notebook under papermill (small parameters), then nbval on the executed notebooks.
test: $(STAMP) browser
	$(PY) -m pytest
	$(PY) -m pytest --nbval-lax -p no:cacheprovider build/notebooks

# kaleido exports plotly figures through Debian's chromium; as root with apt-get (CI) it is installed here, elsewhere
# the figures fall back to matplotlib.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "no chromium: figures will be exported with matplotlib"

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info runs
