# Passage: every command a new machine needs (see README.md).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

#: Debian's Chromium, which the browser tests (tests/browser/) drive through Playwright: Playwright's
#: own browser download needs the internet. `make test` installs the package when it is missing.
CHROMIUM := $(or $(PASSAGE_CHROMIUM),$(firstword $(wildcard /usr/lib/chromium/chromium /usr/bin/chromium)))
#: Debian's docker-compose (1.29), with which tests/integration/test_compose_config.py validates
#: docker-compose.yml from .env.example (`config` needs no Docker engine). `make test` installs it.
DOCKER_COMPOSE := $(shell command -v docker-compose 2>/dev/null)

.PHONY: install lint test up demo chaos bench smoke clean chromium docker-compose

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

test: lint chromium docker-compose
	$(PY) -m pytest -q

chromium:
ifeq ($(CHROMIUM),)
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's chromium for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "the browser tests need Debian's chromium: run 'sudo apt-get install -y chromium'" \
			"(or set PASSAGE_CHROMIUM=/path/to/chromium)" >&2; \
		exit 1; \
	fi
endif

docker-compose:
ifeq ($(DOCKER_COMPOSE),)
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's docker-compose for the compose file's tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null; \
	else \
		echo "the compose file's tests need docker-compose: run 'sudo apt-get install -y docker-compose'" >&2; \
		exit 1; \
	fi
endif

up: install
	PASSAGE_ENV=$${PASSAGE_ENV:-development} $(PY) -m passage.dev.devstack

demo: install
	$(PY) -m passage.dev.demo

chaos: install
	$(PY) -m bench.chaos

bench: install
	$(PY) -m bench.run

smoke:
	python3 ../shared/contract-smoke

clean:
	rm -rf $(VENV) .passage .pytest_cache .mypy_cache .ruff_cache
