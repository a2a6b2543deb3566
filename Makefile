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
TEXT    ?= a red circle to the left of a blue square
K       ?= 5
SET     ?=
SET_ARGS := $(if $(strip $(SET)),--set $(SET),)

.PHONY: setup dev demo test data prepare train eval search notebooks bench lint clean

$(VENV)/.installed: setup.cfg pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -e .
	@touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/python -m pip install -e '.[dev]'
	@touch $@

setup: $(VENV)/.installed          ## create .venv and install dpcnn (idempotent)

dev: $(VENV)/.installed-dev        ## setup + test/notebook/lint tools

demo: setup                        ## the main job on the embedded synthetic data, end to end
	$(DPCNN) demo --run $(RUN)

test: dev                          ## the whole suite, notebooks included
	$(BIN)/python -m pytest

data: setup                        ## fetch a public dataset: make data DATASET=coco|flickr30k-splits|karpathy-splits|word2vec
	$(DPCNN) download $(DATASET) --root $(ROOT)

prepare: setup                     ## validate data and build the caches: make prepare CONFIG=coco
	$(DPCNN) prepare --config $(CONFIG) $(SET_ARGS)

train: setup                       ## make train CONFIG=coco RUN=runs/coco [SET="train.strategy=mirrored"]
	$(DPCNN) train --config $(CONFIG) --run $(RUN) $(SET_ARGS)

eval: setup                        ## make eval RUN=runs/coco
	$(DPCNN) eval --run $(RUN)

search: setup                      ## make search RUN=runs/demo TEXT="a red circle"
	$(DPCNN) search --run $(RUN) --text "$(TEXT)" --k $(K) --out $(RUN)/search.png

notebooks: dev                     ## execute the five notebooks (outputs are not written back)
	$(BIN)/python -m pytest -m notebooks tests/test_notebooks.py

bench: dev                         ## speed and memory ratios against same-run baselines
	$(BIN)/python benchmarks/run_all.py

lint: dev
	$(BIN)/ruff check dpcnn tests benchmarks

clean:                             ## remove the venv, caches and generated data (not runs/)
	rm -rf $(VENV) .pytest_cache .ruff_cache build dist *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
