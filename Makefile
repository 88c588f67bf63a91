# gsvkit: `make tour` runs the main job, `make test` the test suite. Both create .venv and install on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# torch is pinned through constraints.txt (an unpinned torch pulls GBs of CUDA wheels); extra pip options, e.g. an
# index with CPU wheels of torch 2.13.0 for your platform, go in PIP_ARGS.
PIP_ARGS ?=

.PHONY: install tour figures test base-check browser clean camvid camvid-ablation camvid-balance camvid-crop

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
# nets from scratch on train/, 2000 iterations and then 2000 more (the keyframe net and scale chosen on frames
# 0-27 of val/), FlowLight pre-trained on the synthetic set's exact flow, GSVNet's propagation on frames 0-27
# of the 15 Hz val/ run, the protocol on frames 33-50 (frames 28-32 are a gap), throughput, fp16 weights and their
# manifest, figures/camvid/results.md. Interrupted steps resume.
CAMVID ?= ../shared/camvid
CAMVID_RUNS ?= runs/camvid
CAMVID_OUT ?= figures/camvid
CAMVID_KEY_SCALE ?= 0.5
GSV := $(VENV)/bin/gsv
resume = $$([ -f $(1)/checkpoint.pt ] && echo --resume)
KEY_TRAIN = --recipe camvid-keyframe --root $(CAMVID)
EVAL = --dataset camvid --root $(CAMVID)
HELD_OUT = $(EVAL) --split val --span held-out --key-scale $(CAMVID_KEY_SCALE) --variants gsv warp copy
WEIGHTS = weights/camvid_swiftnet_gsvnet.pt
# SwiftNet-R18's class weighting (chosen on val/ frames 0-27 among the rules of `make camvid-balance`), its run
# folder after 2000 iterations and after 2000 more (recipe camvid-keyframe-more), BiSeNet-R18's after 2000 more,
# and the keyframe net the propagation is trained on (frozen; the committed weights hold it too).
SWIFTNET_WEIGHTS ?= sqrt-median-frequency
SWIFTNET = $(CAMVID_RUNS)/swiftnet_$(SWIFTNET_WEIGHTS)
LONGER = $(CAMVID_RUNS)/swiftnet_longer
BISENET = $(CAMVID_RUNS)/bisenet_longer
KEYFRAME ?= $(LONGER)/checkpoint.pt
FLOW = $(CAMVID_RUNS)/flow/checkpoint.pt
# A SwiftNet-R18 run ($(1): its checkpoint) scored alone on val/ frames 0-27 and on test/, into folder $(2)
keyframe_scores = $(GSV) eval --checkpoint $(1) $(EVAL) --split val --span propagation-train --variants image \
	  --out $(2)/val_swiftnet.json && $(GSV) eval --checkpoint $(1) $(EVAL) --split test --variants image \
	  --out $(2)/test_swiftnet.json

camvid: $(STAMP)
	$(GSV) train $(KEY_TRAIN) --keyframe-net swiftnet --class-weights $(SWIFTNET_WEIGHTS) --out $(SWIFTNET) \
	  $(call resume,$(SWIFTNET))
	$(GSV) train --recipe camvid-keyframe-more --root $(CAMVID) --keyframe-net swiftnet \
	  --class-weights $(SWIFTNET_WEIGHTS) --init $(SWIFTNET)/checkpoint.pt --out $(LONGER) $(call resume,$(LONGER))
	$(GSV) train $(KEY_TRAIN) --keyframe-net bisenet --out $(CAMVID_RUNS)/bisenet $(call resume,$(CAMVID_RUNS)/bisenet)
	$(GSV) train --recipe camvid-keyframe-more --root $(CAMVID) --keyframe-net bisenet \
	  --init $(CAMVID_RUNS)/bisenet/checkpoint.pt --out $(BISENET) $(call resume,$(BISENET))
	# the keyframe net and its scale are chosen on the propagation's training part of val/, never on test/ or the
	# held-out frames
	$(call keyframe_scores,$(LONGER)/checkpoint.pt,$(CAMVID_OUT)/longer)
	$(GSV) eval --checkpoint $(BISENET)/checkpoint.pt $(EVAL) --split val --span propagation-train \
	  --variants image --out $(CAMVID_OUT)/selection/val_bisenet.json
	$(GSV) data synth --out data/synthetic
	$(GSV) train --stage flow --out $(CAMVID_RUNS)/flow $(call resume,$(CAMVID_RUNS)/flow)
	$(GSV) eval --checkpoint $(FLOW) --variants flow --out $(CAMVID_OUT)/flow_error.json
	$(GSV) train --recipe camvid-gsv --root $(CAMVID) --key-scale $(CAMVID_KEY_SCALE) --init $(KEYFRAME) \
	  --init-flow $(FLOW) --out $(CAMVID_RUNS)/gsvnet $(call resume,$(CAMVID_RUNS)/gsvnet)
	$(GSV) export --checkpoint $(CAMVID_RUNS)/gsvnet/checkpoint.pt --out $(WEIGHTS) --manifest weights/manifest.json
	$(GSV) eval --checkpoint $(WEIGHTS) $(EVAL) --split test --variants image --out $(CAMVID_OUT)/image_swiftnet.json
	$(GSV) eval --checkpoint $(BISENET)/checkpoint.pt $(EVAL) --split test --variants image \
	  --out $(CAMVID_OUT)/image_bisenet.json
	$(GSV) eval --checkpoint $(WEIGHTS) $(HELD_OUT) --out $(CAMVID_OUT)/propagation.json
	$(GSV) export --checkpoint $(CAMVID_RUNS)/gsvnet/checkpoint.pt --out $(WEIGHTS) --manifest weights/manifest.json \
	  --metrics $(CAMVID_OUT)/propagation.json $(CAMVID_OUT)/image_swiftnet.json
	$(GSV) bench --checkpoint $(WEIGHTS) --key-scale $(CAMVID_KEY_SCALE) --size 720x960 --json $(CAMVID_OUT)/bench_720x960.json
	$(GSV) bench --checkpoint $(WEIGHTS) --key-scale $(CAMVID_KEY_SCALE) --size 1024x2048 --json $(CAMVID_OUT)/bench_1024x2048.json
	$(GSV) tables $(CAMVID_OUT)

# What each source of supervision adds to the propagation on the held-out frames 33-50 (README, CamVid), on the
# committed keyframe net (KEYFRAME) at its keyframe scale. Each row trains the camvid-gsv recipe on that keyframe net:
# without the pre-trained flow net (base); with it (flowinit: the committed weights' recipe, the same command as
# `make camvid`'s propagation); then with distillation from the keyframe net, and with frame-rate jitter added to that;
# then flowinit with a photometric loss, and flowinit after the whole propagation trained on the synthetic set in
# CamVid's classes (synthprop). Run after `make camvid` (for the keyframe and flow nets); about 75 min on 2 cores;
# each step resumes. The README's rows on the 2000-iteration SwiftNet-R18: `make camvid-ablation
# KEYFRAME=runs/camvid/swiftnet_sqrt-median-frequency/checkpoint.pt ABLATION=runs/ablation-2000
# ABLATION_OUT=figures/camvid/ablation-2000`.
ABLATION ?= runs/ablation
ABLATION_OUT ?= $(CAMVID_OUT)/ablation
ROW_TRAIN = --recipe camvid-gsv --root $(CAMVID) --key-scale $(CAMVID_KEY_SCALE) --init $(KEYFRAME)
row = $(GSV) train $(ROW_TRAIN)$(if $(2), $(2)) --out $(ABLATION)/$(1) $(call resume,$(ABLATION)/$(1))

camvid-ablation: $(STAMP)
	$(call row,base,)
	$(call row,flowinit,--init-flow $(FLOW))
	$(call row,distill,--init-flow $(FLOW) --distill 1)
	$(call row,jitter,--init-flow $(FLOW) --distill 1 --max-frame-step 2)
	$(call row,photometric,--init-flow $(FLOW) --photometric 1)
	$(GSV) train --recipe synthetic-gsv --init $(KEYFRAME) --init-flow $(FLOW) \
	  --out $(ABLATION)/synthetic-gsv $(call resume,$(ABLATION)/synthetic-gsv)
	$(call row,synthprop,--init-propagation $(ABLATION)/synthetic-gsv/checkpoint.pt)
	for run in base flowinit distill jitter photometric synthprop; do \
	  $(GSV) eval --checkpoint $(ABLATION)/$$run/checkpoint.pt $(HELD_OUT) --out $(ABLATION_OUT)/$$run.json || exit 1; \
	done
	$(GSV) tables $(CAMVID_OUT)

# Larger crops for SwiftNet-R18 (README, CamVid): the camvid-keyframe recipe and the committed class weights from
# scratch on crops of 3/4 instead of 1/2 at batch 4 instead of 8 (about the same pixels per batch), scored like the
# class-balancing rows. About 35 min on 2 cores; resumes.
CROP = $(CAMVID_RUNS)/swiftnet_crop

camvid-crop: $(STAMP)
	$(GSV) train $(KEY_TRAIN) --keyframe-net swiftnet --class-weights $(SWIFTNET_WEIGHTS) --crop 0.75 --batch-size 4 \
	  --out $(CROP) $(call resume,$(CROP))
	$(call keyframe_scores,$(CROP)/checkpoint.pt,$(CAMVID_OUT)/crop)
	$(GSV) tables $(CAMVID_OUT)

# Class balancing of the keyframe net (README, CamVid): SwiftNet-R18 on the camvid-keyframe recipe with each
# --class-weights rule, scored like the committed net (val/ frames 0-27 at each scale, then test/). About 35 min per
# rule on 2 cores; each step resumes.
BALANCE_RULES ?= none median-frequency sqrt-median-frequency

camvid-balance: $(STAMP)
	for rule in $(BALANCE_RULES); do \
	  run=$(CAMVID_RUNS)/swiftnet_$$rule; \
	  $(GSV) train $(KEY_TRAIN) --keyframe-net swiftnet --class-weights $$rule --out $$run \
	    $$([ -f $$run/checkpoint.pt ] && echo --resume) || exit 1; \
	  $(call keyframe_scores,$$run/checkpoint.pt,$(CAMVID_OUT)/balance/$$rule) || exit 1; \
	done
	$(GSV) tables $(CAMVID_OUT)

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info runs
