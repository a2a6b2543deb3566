# dpcnn — every target is one line that calls the CLI (or pip/pytest) inside .venv.
# `make demo` and `make test` work on a fresh clone: they create .venv and install first.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DPCNN  := $(BIN)/dpcnn

CONFIG  ?= demo
RUN     ?= runs/$(CONFIG)
DATASET ?= coco
ROOT    ?= data
DELETE_ARCHIVES ?=
FROM    ?=
TEXT    ?= a red circle to the left of a blue square
K       ?= 5
SET     ?=
SET_ARGS := $(if $(strip $(SET)),--set $(SET),)
PROTOCOL ?=
STAGE    ?=
SPLIT    ?= test
OUT      ?= exports/$(notdir $(RUN))
IMAGES   ?=
EVAL_ARGS := --split $(SPLIT) $(if $(strip $(PROTOCOL)),--protocol $(PROTOCOL),) $(if $(strip $(STAGE)),--stage $(STAGE),)

# The Colab stack (constraints/colab.txt) in its own venv, built with a Python 3.13:
# pyenv's newest 3.13.x, else `pyenv which python3.13`, else python3.13 on PATH (or PYTHON_COLAB=...).
PYENV_ROOT   ?= $(HOME)/.pyenv
VENV_COLAB   ?= .venv-colab
COLAB_PINS   := constraints/colab.txt
# `?=` is expanded only where a Colab target uses it; grep -v drops free-threaded builds (3.13.0t/bin/).
PYTHON_COLAB ?= $(or $(shell ls -d $(PYENV_ROOT)/versions/3.13*/bin/python3.13 2>/dev/null | grep -v 't/bin/' | sort -V | tail -n 1),$(shell pyenv which python3.13 2>/dev/null),$(shell command -v python3.13 2>/dev/null))

.PHONY: setup dev demo test dev-colab test-colab wheel wheel-check data prepare train eval search export alt-text notebooks bench compare rehearse mutants lint clean

$(VENV)/.installed: setup.cfg pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -e .
	@touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/python -m pip install -e '.[dev]'
	@touch $@

$(VENV_COLAB)/.installed: setup.cfg pyproject.toml $(COLAB_PINS)
	@"$(PYTHON_COLAB)" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null || { echo "make: no Python 3.13 for the Colab stack (looked in $(PYENV_ROOT)/versions/3.13*, pyenv which python3.13, python3.13 on PATH; got '$(PYTHON_COLAB)'): pyenv install 3.13, or make test-colab PYTHON_COLAB=/path/to/python3.13" >&2; exit 1; }
	@$(VENV_COLAB)/bin/python -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null || $(PYTHON_COLAB) -m venv --clear $(VENV_COLAB)
	$(VENV_COLAB)/bin/python -m pip install --upgrade pip setuptools wheel
	$(VENV_COLAB)/bin/python -m pip install -c $(COLAB_PINS) -e '.[dev]'
	@touch $@

setup: $(VENV)/.installed          ## create .venv and install dpcnn (idempotent)

dev: $(VENV)/.installed-dev        ## setup + test/notebook/lint tools

demo: setup                        ## the main job on the embedded synthetic data, end to end
	$(DPCNN) demo --run $(RUN)

test: dev                          ## the whole suite, notebooks included
	$(BIN)/python -m pytest

dev-colab: $(VENV_COLAB)/.installed  ## .venv-colab: Python 3.13 + dpcnn[dev] under constraints/colab.txt (idempotent)

test-colab: dev-colab              ## the whole suite on the Colab stack (.venv-colab)
	$(VENV_COLAB)/bin/python -m pytest

wheel: dev                         ## dist/: the sdist and the wheel (python -m build), nothing else
	rm -rf dist && $(BIN)/python -m build --outdir dist .

wheel-check: wheel                 ## install dist/'s wheel into a fresh venv (temp dir), run `dpcnn --version` and an import
	$(BIN)/python tools/wheel_check.py --dist dist --python $(PYTHON)

data: setup                        ## fetch a public dataset: make data DATASET=coco|flickr30k-splits|karpathy-splits|word2vec|emoji [DELETE_ARCHIVES=1] [FROM=openmoji-17.0.0.tgz]
	$(DPCNN) download $(DATASET) --root $(ROOT) $(if $(filter 1,$(DELETE_ARCHIVES)),--delete-archives,) $(if $(strip $(FROM)),--from $(FROM),)

prepare: setup                     ## validate data and build the caches: make prepare CONFIG=coco
	$(DPCNN) prepare --config $(CONFIG) $(SET_ARGS)

train: setup                       ## make train CONFIG=coco RUN=runs/coco [SET="train.strategy=mirrored"]
	$(DPCNN) train --config $(CONFIG) --run $(RUN) $(SET_ARGS)

eval: setup                        ## make eval RUN=runs/coco [PROTOCOL="1k 5k"] [STAGE=1] [SPLIT=val]
	$(DPCNN) eval --run $(RUN) $(EVAL_ARGS)

search: setup                      ## make search RUN=runs/demo TEXT="a red circle"
	$(DPCNN) search --run $(RUN) --text "$(TEXT)" --k $(K) --out $(RUN)/search.png

export: setup                      ## make export RUN=runs/demo [OUT=exports/demo]
	$(DPCNN) export --run $(RUN) --out $(OUT)

alt-text: setup                    ## make alt-text RUN=runs/demo IMAGES=my_photos/ : nearest existing captions -> $(RUN)/alt.csv
	$(DPCNN) alt-text --run $(RUN) --images $(IMAGES) --out $(RUN)/alt.csv --html

notebooks: dev                     ## execute the notebooks (outputs are not written back)
	$(BIN)/python -m pytest -m notebooks tests/test_notebooks.py

bench: dev                         ## speed and memory ratios against same-run baselines
	$(BIN)/python benchmarks/run_all.py

compare: setup                     ## the paper's ablations and VSE++/InfoNCE, 3 seeds, demo + emoji -> docs/compare.md (60-90 min, not in CI)
	$(BIN)/python tools/compare.py

rehearse: setup                    ## a real-size run's path on generated data, each step measured -> /tmp/dpcnn-rehearsal/rehearsal.md
	$(BIN)/python benchmarks/rehearse.py

mutants: dev                       ## single-line mutations of the paper's core: every one must make a fast test fail
	$(BIN)/python tools/mutants.py

lint: dev
	$(BIN)/ruff check dpcnn tests benchmarks tools

clean:                             ## remove the venv, caches and generated data (not runs/)
	rm -rf $(VENV) $(VENV_COLAB) .pytest_cache .ruff_cache build dist *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
