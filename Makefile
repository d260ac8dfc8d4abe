# Two commands do everything on a fresh machine:
#   make run   - install what is missing, then the default job (corpus, teacher, students, report)
#   make test  - install what is missing, then the test suite
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
RUN_ARGS ?=
JOBS ?= 2
COMPARE_ARGS ?=

.PHONY: setup system run test compare clean

setup: system $(STAMP)

system:
	@bash tools/setup_system.sh

$(VENV)/bin/python:
	python3 -m venv $(VENV)

# Reinstalled only when pyproject.toml changes.
$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: setup
	$(VENV)/bin/kws-okd run --results-page docs/results.md $(RUN_ARGS)

test: setup
	$(PY) -m pytest tests

# The method comparison (12 methods x 3 seeds x 330 optimiser steps, 30 % of make run's
# budget; about 2 h on 2 CPU cores), using the teacher `make run` trained. Resumable: run
# it again after an interruption. One row: COMPARE_ARGS="--methods kd".
COMPARE_STEPS ?= 330
compare: setup
	$(PY) tools/compare_methods.py --jobs $(JOBS) --steps $(COMPARE_STEPS) $(COMPARE_ARGS)

clean:
	rm -rf results outputs
