# gsvkit: `make tour` runs the main job, `make test` the test suite. Both create .venv and install on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# torch is pinned through constraints.txt (an unpinned torch pulls GBs of CUDA wheels); extra pip options, e.g. an
# index with CPU wheels of torch 2.13.0 for your platform, go in PIP_ARGS.
PIP_ARGS ?=

.PHONY: install notebook-filter tour figures synthetic synthetic-stills test test-fast base-check browser clean camvid camvid-ablation \
	camvid-ablation-2000 camvid-keyframe camvid-stills

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check $(PIP_ARGS) -c constraints.txt -e ".[dev]"
	$(MAKE) --no-print-directory notebook-filter
	touch $(STAMP)

# The numbered notebooks stay as committed when run: JupyterLab in this environment saves them without outputs (a
# pre-save hook, gsvlib.notebook.strip_tracked_outputs), and .gitattributes sends every notebook through nbstripout
# (cell ids kept) when git reads it, so no output is ever committed; outside a git clone there is no filter to set.
KERNEL_DETAILS = $(addprefix metadata.language_info.,version codemirror_mode file_extension mimetype nbconvert_exporter \
	pygments_lexer)  # what a kernel adds to a notebook's metadata when it runs it
notebook-filter:
	@mkdir -p $(VENV)/etc/jupyter/jupyter_server_config.d
	@echo '{"ContentsManager": {"pre_save_hook": "gsvlib.notebook.strip_tracked_outputs"}}' \
	  > $(VENV)/etc/jupyter/jupyter_server_config.d/gsvkit.json
	@if git rev-parse --git-dir >/dev/null 2>&1; then \
	  git config filter.nbstripout.clean "'$(abspath $(PY))' -m nbstripout --keep-id --extra-keys '$(KERNEL_DETAILS)'" && \
	  git config filter.nbstripout.smudge cat && echo "notebooks: saved and committed without outputs"; fi

# The main job: `gsv run` over experiments/synthetic (run folders in runs/synthetic) and `gsv tables` over its results;
# the result files, the page (results.md) and its plots go to runs/tour/report, so the tree stays clean.
tour: $(STAMP)
	$(VENV)/bin/gsv tour

# Refresh the reference results committed in figures/synthetic and their page, figures/results.md (on purpose, after a
# change that moves the results). `gsv tables figures/synthetic --out figures/results.md` renders the same page.
figures: $(STAMP)
	$(VENV)/bin/gsv tour --figures figures/synthetic --page figures/results.md

# The tour's propagation again under seeds 0, 1 and 2 (sharing the tour's keyframe net): the table with the spread
# across seeds beside the intervals over frames, docs/results/synthetic.md. About 10 minutes on 2 cores after `make tour`.
synthetic: $(STAMP)
	$(VENV)/bin/gsv run experiments/synthetic/gsv.toml --seeds 0 1 2
	$(VENV)/bin/gsv tables figures/synthetic --tables propagation --out docs/results/synthetic.md

# Whether stills stand in for video where the answer is known: the same propagation trained on the synthetic set's
# labelled frames set in motion instead of its video, under seeds 0, 1 and 2, beside `make synthetic`'s rows.
synthetic-stills: $(STAMP)
	$(VENV)/bin/gsv run experiments/synthetic/stills
	$(VENV)/bin/gsv run experiments/synthetic/stills --seeds 1 2
	$(VENV)/bin/gsv tables figures/synthetic --tables propagation --out docs/results/synthetic.md

# Unit tests and every notebook under papermill (small parameters), then nbval on the executed notebooks; then the
# runtime on a base install (no extras) in a throwaway venv. nbval reads a cell's output only after the cell, so its
# progress bars redraw every 10 s (TQDM_MININTERVAL): fewer messages than the kernel's output queue holds.
test: $(STAMP) browser
	$(PY) -m pytest
	TQDM_MININTERVAL=10 $(PY) -m pytest --nbval-lax -p no:cacheprovider build/notebooks
	$(MAKE) base-check

# The unit tests without the slow ones (notebooks, browser, ONNX export, several processes): under 2 minutes.
test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow" -q

base-check:
	PYTHON=$(PYTHON) PIP_ARGS="$(PIP_ARGS)" bash .ci/base-install-check

# kaleido exports plotly figures through Debian's chromium; as root with apt-get (CI) it is installed here, elsewhere
# the figures fall back to matplotlib.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "no chromium: figures will be exported with matplotlib"

# The CamVid results (docs/results/camvid.md): one `gsv run` per folder of experiment files (experiments/camvid/,
# one .toml per experiment: what it trains, from what, which evaluations it writes where). Each trains what is missing,
# resumes what was interrupted, skips what is done, and writes its results with its own description; `gsv tables`
# renders them. CAMVID: a folder in the SegNet layout (data/README.md).
CAMVID ?= ../shared/camvid
RUN = $(VENV)/bin/gsv run --root camvid=$(CAMVID)
TABLES = $(VENV)/bin/gsv tables figures/camvid --out docs/results/camvid.md

# Both keyframe nets from scratch (2000 iterations, then 2000 more), FlowLight on the synthetic set's exact flow, the
# propagation on val/ frames 0-27, the committed weights with their manifest, their protocol on the held-out frames
# and their throughput. About 2 h 40 min on 2 cores.
camvid: $(STAMP)
	$(RUN) experiments/camvid
	$(TABLES)

# What each source of supervision adds to the propagation, on the committed keyframe net (about 75 min after `make
# camvid`), and on the 2000-iteration SwiftNet-R18 of the earlier weights.
camvid-ablation: $(STAMP)
	$(RUN) experiments/camvid/ablation
	$(TABLES)

# The propagation learned from CamVid train/'s stills set in motion (experiments/camvid/stills: alone or with the 15 Hz
# frames, with and without distillation), each under seeds 0, 1 and 2 from the committed keyframe net (about 18 min
# per run on 2 cores).
camvid-stills: $(STAMP)
	$(RUN) experiments/camvid/stills --use camvid/swiftnet=weights/camvid_swiftnet_gsvnet.pt
	$(RUN) experiments/camvid/stills --seeds 1 2 --use camvid/swiftnet=weights/camvid_swiftnet_gsvnet.pt
	$(TABLES)

camvid-ablation-2000: $(STAMP)
	$(RUN) experiments/camvid/ablation-2000
	$(TABLES)

# SwiftNet-R18 trained otherwise: each class weighting rule, and larger crops (about 35 min each).
camvid-keyframe: $(STAMP)
	$(RUN) experiments/camvid/keyframe
	$(TABLES)

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info runs
