# `make test` and `make demo` set everything up from nothing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test demo venv clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch pinned first: an unpinned torch would pull several GB of CUDA wheels.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# Lint and type checks first (seconds), then the suite.
test: $(STAMP)
	$(VENV)/bin/ruff check cornernet_saccade tests benchmarks
	$(VENV)/bin/mypy cornernet_saccade
	$(PY) -m pytest -q tests

# The bundled default models on the bundled images; pictures and detections.json go to demo_output/
# (the demo's own folder: a second `make demo` replaces its files).
demo: $(STAMP)
	$(PY) -m cornernet_saccade detect --weights shapes examples/shapes_scene.jpg --out demo_output/shapes --score-threshold 0.3 --overwrite
	$(PY) -m cornernet_saccade detect --weights trees examples/trees_neon_yell.png --out demo_output/trees --score-threshold 0.3 --overwrite
	$(PY) -m cornernet_saccade detect --weights shapes-squeeze examples/shapes_scene.jpg --out demo_output/shapes-squeeze --score-threshold 0.3 --overwrite
	@echo "pictures: demo_output/shapes/*.png demo_output/trees/*.png demo_output/shapes-squeeze/*.png"

clean:
	rm -rf $(VENV) demo_output
