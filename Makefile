# Quick start: `make demo` and `make test` each set up .venv on a fresh machine, then run.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup demo test bench model clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch is pinned to the CPU build through constraints.txt (no multi-GB CUDA download)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/her2path demo --out demo-out

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev,bench]'
	for b in tiling_memory ihc_accuracy ihc_random ihc_blur ihc_profile ihc_speed ish_accuracy ish_random ish_simfish tile_model tile_flags batch_speed; do $(PY) -m benchmarks.$$b || exit 1; done
	# real cores (needs ../shared/data/real-labelled, or: python -m benchmarks.real_ihc DIR)
	$(PY) -m benchmarks.real_ihc || true

# The default tile model: randomised-generator tiles (seed 0), trained by our own `her2path train`.
model: setup
	$(PY) -m her2path.synthetic.tiles benchmarks/.cache/tiles/train --n 2400 --seed 0
	$(VENV)/bin/her2path train benchmarks/.cache/tiles/train --out models/tile_model.pt --epochs 12 --seed 0 --restart

clean:
	rm -rf $(VENV) demo-out .pytest_cache
