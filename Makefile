# Passage: every command a new machine needs (see README.md).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: install lint test up demo chaos bench smoke clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(INSTALLED)

install: $(INSTALLED)

lint: install
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy --strict workflows activities

test: lint
	$(PY) -m pytest -q

up: install
	PASSAGE_ENV=$${PASSAGE_ENV:-development} $(PY) -m passage.devstack

demo: install
	$(PY) -m passage.demo

chaos: install
	$(PY) -m bench.chaos

bench: install
	$(PY) -m bench.run

smoke:
	python3 ../shared/contract-smoke

clean:
	rm -rf $(VENV) .passage .pytest_cache .mypy_cache .ruff_cache
