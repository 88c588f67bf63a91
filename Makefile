# gsvkit: `make tour` runs the main job, `make test` the test suite. Both create .venv and install on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# torch is pinned through constraints.txt (an unpinned torch pulls GBs of CUDA wheels); extra pip options, e.g. an
# index with CPU wheels of torch 2.13.0 for your platform, go in PIP_ARGS.
PIP_ARGS ?=

.PHONY: install tour figures test base-check browser clean camvid camvid-ablation

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check $(PIP_ARGS) -c constraints.txt -e ".[dev]"
	touch $(STAMP)

# The main job; its report (results.md, results.json, plots) goes to runs/tour/report, so the tree stays clean.
tour: $(STAMP)
	$(VENV)/bin/gsv tour

# Refresh the reference report committed in figures/ (on purpose, after a change that moves the results).
figures: $(STAMP)
	$(VENV)/bin/gsv tour --figures figures

# Unit tests and every notebook under papermill (small parameters), then nbval on the executed notebooks; then the
# runtime on a base install (no extras) in a throwaway venv. nbval reads a cell's output only after the cell, so its
# progress bars redraw every 10 s (TQDM_MININTERVAL): fewer messages than the kernel's output queue holds.
test: $(STAMP) browser
	$(PY) -m pytest
	TQDM_MININTERVAL=10 $(PY) -m pytest --nbval-lax -p no:cacheprovider build/notebooks
	$(MAKE) base-check

base-check:
	PYTHON=$(PYTHON) PIP_ARGS="$(PIP_ARGS)" bash .ci/base-install-check

# kaleido exports plotly figures through Debian's chromium; as root with apt-get (CI) it is installed here, elsewhere
# the figures fall back to matplotlib.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "no chromium: figures will be exported with matplotlib"

# The CamVid results of the README (CAMVID: a folder in the SegNet layout, see data/README.md). Both keyframe
# nets from scratch on train/, GSVNet's propagation on the first two thirds of the 15 Hz val/ run, the protocol on the
# last third, throughput, fp16 weights and their manifest, figures/camvid/results.md. Interrupted steps resume.
CAMVID ?= ../shared/camvid
CAMVID_RUNS ?= runs/camvid
CAMVID_OUT ?= figures/camvid
CAMVID_KEY_SCALE ?= 0.75
GSV := $(VENV)/bin/gsv
resume = $$([ -f $(1)/checkpoint.pt ] && echo --resume)
BISENET_ITERATIONS ?= 800  # the recorded run (SwiftNet-R18 ran 2000)
KEY_TRAIN = --recipe camvid-keyframe --root $(CAMVID)
EVAL = --dataset camvid --root $(CAMVID)
WEIGHTS = weights/camvid_swiftnet_gsvnet.pt

camvid: $(STAMP)
	$(GSV) train $(KEY_TRAIN) --keyframe-net swiftnet --out $(CAMVID_RUNS)/swiftnet $(call resume,$(CAMVID_RUNS)/swiftnet)
	$(GSV) eval --checkpoint $(CAMVID_RUNS)/swiftnet/checkpoint.pt $(EVAL) --split val --variants image \
	  --out $(CAMVID_OUT)/selection/val_swiftnet.json  # the keyframe scale is chosen on val/, never on test/
	$(GSV) train $(KEY_TRAIN) --iterations $(BISENET_ITERATIONS) --keyframe-net bisenet --out $(CAMVID_RUNS)/bisenet $(call resume,$(CAMVID_RUNS)/bisenet)
	$(GSV) train --recipe camvid-gsv --root $(CAMVID) --key-scale $(CAMVID_KEY_SCALE) \
	  --init $(CAMVID_RUNS)/swiftnet/checkpoint.pt --out $(CAMVID_RUNS)/gsvnet $(call resume,$(CAMVID_RUNS)/gsvnet)
	$(GSV) export --checkpoint $(CAMVID_RUNS)/gsvnet/checkpoint.pt --out $(WEIGHTS) --manifest weights/manifest.json
	$(GSV) eval --checkpoint $(WEIGHTS) $(EVAL) --split test --variants image --out $(CAMVID_OUT)/image_swiftnet.json
	$(GSV) eval --checkpoint $(CAMVID_RUNS)/bisenet/checkpoint.pt $(EVAL) --split test --variants image \
	  --out $(CAMVID_OUT)/image_bisenet.json
	$(GSV) eval --checkpoint $(WEIGHTS) $(EVAL) --split val --span 0.667 1 --key-scale $(CAMVID_KEY_SCALE) \
	  --variants gsv warp copy --out $(CAMVID_OUT)/propagation.json
	$(GSV) export --checkpoint $(CAMVID_RUNS)/gsvnet/checkpoint.pt --out $(WEIGHTS) --manifest weights/manifest.json \
	  --metrics $(CAMVID_OUT)/propagation.json $(CAMVID_OUT)/image_swiftnet.json
	$(GSV) bench --checkpoint $(WEIGHTS) --key-scale $(CAMVID_KEY_SCALE) --size 720x960 --json $(CAMVID_OUT)/bench_720x960.json
	$(GSV) bench --checkpoint $(WEIGHTS) --key-scale $(CAMVID_KEY_SCALE) --size 1024x2048 --json $(CAMVID_OUT)/bench_1024x2048.json
	$(GSV) tables $(CAMVID_OUT)

# What each source of supervision adds to the propagation on frames it never saw (README, CamVid). The 15 Hz val/ run
# is split in time: propagation trains on frames 0-27, frames 28-32 are a gap, frames 33-50 are scored. The frozen
# SwiftNet is the committed one. Rows add one ingredient each: FlowLight pre-trained on the synthetic set's exact flow,
# distillation from the keyframe net, frame-rate jitter. About 1 h on 2 cores; each step resumes.
ABLATION ?= runs/ablation
ABLATION_OUT ?= $(CAMVID_OUT)/ablation
HONEST_TRAIN = --recipe camvid-gsv --root $(CAMVID) --span 0 0.55 --init $(WEIGHTS) --iterations 800
HONEST_EVAL = $(EVAL) --split val --span 0.65 1 --key-scale $(CAMVID_KEY_SCALE) --variants gsv warp copy
FLOW_INIT = --init-flow $(ABLATION)/flow/checkpoint.pt

camvid-ablation: $(STAMP)
	$(GSV) data synth --out data/synthetic
	$(GSV) train --stage flow --out $(ABLATION)/flow $(call resume,$(ABLATION)/flow)
	$(GSV) eval --checkpoint $(ABLATION)/flow/checkpoint.pt --variants flow --out $(ABLATION_OUT)/flow_error.json
	$(GSV) train $(HONEST_TRAIN) --out $(ABLATION)/base $(call resume,$(ABLATION)/base)
	$(GSV) train $(HONEST_TRAIN) $(FLOW_INIT) --out $(ABLATION)/flowinit $(call resume,$(ABLATION)/flowinit)
	$(GSV) train $(HONEST_TRAIN) $(FLOW_INIT) --distill 1 --out $(ABLATION)/distill $(call resume,$(ABLATION)/distill)
	$(GSV) train $(HONEST_TRAIN) $(FLOW_INIT) --distill 1 --max-frame-step 2 --out $(ABLATION)/jitter \
	  $(call resume,$(ABLATION)/jitter)
	for run in base flowinit distill jitter; do \
	  $(GSV) eval --checkpoint $(ABLATION)/$$run/checkpoint.pt $(HONEST_EVAL) --out $(ABLATION_OUT)/$$run.json || exit 1; \
	done
	$(GSV) eval --checkpoint $(WEIGHTS) $(HONEST_EVAL) --out $(ABLATION_OUT)/committed.json

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info runs
