# Two commands do everything:  make reproduce   (regenerate results/, demo profile)
#                              make test        (unit, notebook and real-data tests)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= demo
ONLY ?=
# The OpenKBP copy to read; without one, notebook 01 downloads OpenKBP from upstream.
SHARED_OPENKBP := $(wildcard $(CURDIR)/../shared/datasets/openkbp)
export RPRLOC_OPENKBP_SOURCE ?= $(SHARED_OPENKBP)

.PHONY: reproduce test check-results train env smoke benchmarks clean-env

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

env: $(VENV)/.installed

reproduce: $(VENV)/.installed
	$(PY) -m rprloc_core.reproduce --profile $(PROFILE) $(if $(ONLY),--only $(ONLY))

test: $(VENV)/.installed
	$(PY) -m pytest

# Regenerate the profile's results into a scratch folder (never over results/) and compare every
# committed table with its new version (numbers within a tolerance, timings not compared).
# After a deliberate change, `make reproduce` rewrites results/ (which is the baseline): commit it.
SCRATCH ?= $(CURDIR)/.scratch-results
check-results: $(VENV)/.installed
	rm -rf $(SCRATCH)
	RPRLOC_RESULTS_DIR=$(SCRATCH) $(PY) -m rprloc_core.reproduce --profile $(PROFILE) --quiet
	$(PY) -m rprloc_core.compare_results results/$(PROFILE) $(SCRATCH)/$(PROFILE)

# Retrain the profile's models into data/ (resumable; the committed release is never touched).
# To publish them as the new release: add PUBLISH="--publish --overwrite".
train: $(VENV)/.installed
	$(PY) -m data_prep.prepare --profile $(PROFILE)
	$(PY) -m rprloc_core.experiments.retrain --profile $(PROFILE) $(PUBLISH)

smoke: $(VENV)/.installed
	$(PY) -m rprloc_core.reproduce --profile smoke

# COMPARE_FINE=path/to/fine.pt also times the default schedule with that fine model (e.g. the
# previous release's: git show <commit>:weights/openkbp-han-demo/fine.pt > old_fine.pt);
# COMPARE_COARSE likewise for the coarse model (both given: timed together).
COMPARE_FINE ?=
COMPARE_COARSE ?=
benchmarks: $(VENV)/.installed
	$(PY) benchmarks/data_pipeline.py --profile $(PROFILE)
	$(PY) benchmarks/rprloc_inference.py --profile $(PROFILE) $(if $(COMPARE_FINE),--compare-fine $(COMPARE_FINE)) \
		$(if $(COMPARE_COARSE),--compare-coarse $(COMPARE_COARSE))
	$(PY) benchmarks/widget_redraw.py --profile $(PROFILE)
	$(PY) benchmarks/localize_series.py --profile $(PROFILE)
	$(PY) benchmarks/training_allocator.py --profile $(PROFILE) --model coarse
	$(PY) benchmarks/training_allocator.py --profile $(PROFILE) --model fine

clean-env:
	rm -rf $(VENV)
