# vlmerge: every command a researcher or CI needs. `make help` lists them.
SHELL := /bin/bash
VENV  ?= .venv
PY    := $(VENV)/bin/python
BIN   := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help install export check-sync test test-slow docs demo study-cpu study-cpu-sweep fold-study-cpu fold-study-gpu clean lab

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' Makefile | sed 's/:.*## /\t/'

$(STAMP): requirements.txt settings.ini setup.py
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	@touch $(STAMP)

install: $(STAMP)  ## create .venv and install the pinned requirements and vlmerge (editable)

export: $(STAMP)  ## notebooks -> library, clean notebooks, README from nbs/index.ipynb
	$(BIN)/nbdev_export
	$(BIN)/nbdev_clean
	$(PY) tools/readme.py

check-sync: $(STAMP)  ## fail if nbdev_export / nbdev_clean / the README would change a file
	$(PY) tools/check_sync.py

# Two notebook processes on two cores: one math thread each (more threads per process oversubscribe the cores and
# spin, which makes small models many times slower).
test: check-sync  ## every test: notebooks (nbdev_test) then pytest tests/
	OMP_NUM_THREADS=1 $(BIN)/nbdev_test --n_workers 2
	$(BIN)/pytest tests/

test-slow: $(STAMP)  ## the notebooks' slow cells too
	OMP_NUM_THREADS=1 $(BIN)/nbdev_test --n_workers 2 --flags slow

docs: $(STAMP)  ## build the static documentation site under _docs/ (offline; nbdev_docs where Quarto exists)
	$(PY) tools/build_docs.py

demo: $(STAMP)  ## the main job: a small study grid on the built-in world (report under runs/demo)
	$(BIN)/vlmerge demo --out runs/demo

study-cpu: $(STAMP)  ## the demo's grid in full: 3 seeds, the paper's three merges (about 50 minutes; runs/study-cpu)
	$(BIN)/vlmerge study configs/study-cpu.yaml --out runs/study-cpu --workers 3

study-cpu-sweep: $(STAMP)  ## the K_seed sweep for the distance predictors: K_seed 0/100/200/300, two sharing variants (hours; runs/study-cpu-sweep)
	$(BIN)/vlmerge study configs/study-cpu-sweep.yaml --out runs/study-cpu-sweep --workers 2

fold-study-cpu: $(STAMP)  ## every fold-capable merge method, 2 settings each, 3 seeds (about an hour on 2 cores; runs/fold-study-cpu)
	$(BIN)/vlmerge study configs/fold-study-cpu.yaml --out runs/fold-study-cpu --workers 3

fold-study-gpu: $(STAMP)  ## the fold study at GPU scale, five tasks (one GPU, not yet run; runs/fold-study-gpu)
	$(BIN)/vlmerge study configs/fold-study-gpu.yaml --out runs/fold-study-gpu --workers 3

lab: $(STAMP)  ## open the notebooks in JupyterLab
	$(BIN)/jupyter lab nbs

clean:  ## remove build output (not the venv)
	rm -rf _docs _proc build dist *.egg-info .pytest_cache
