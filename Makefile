# Two commands do everything on a fresh machine:
#   make run   - install what is missing, then the default job (corpus, teacher, students, report)
#   make test  - install what is missing, then the test suite
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
RUN_ARGS ?=

.PHONY: setup system run test clean

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
	$(VENV)/bin/kws-okd run $(RUN_ARGS)

test: setup
	$(PY) -m pytest tests

clean:
	rm -rf results outputs
