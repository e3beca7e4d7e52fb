# Steelyard: two commands set everything up on a fresh machine.
#   make run   create .venv, install, initialise ./instance (admin account) if needed, serve :8000
#   make test  install what the tests need (Python packages, Debian chromium) and run them all
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTANCE ?= instance
URL ?= http://127.0.0.1:8000
BIND ?= 127.0.0.1:8000
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: run test install install-test chromium lint demo bench clean-venv schema

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	@touch $@

$(TEST_STAMP): pyproject.toml $(STAMP)
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $@

install: $(STAMP)

install-test: $(TEST_STAMP) chromium

chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "Installing Debian chromium for the browser tests"; \
	  SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

run: install
	@if [ ! -f $(INSTANCE)/config.toml ]; then \
	  $(BIN)/steelyard --instance $(INSTANCE) init --url $(URL) --name "$${STEELYARD_NAME:-Steelyard}" && \
	  if [ -n "$$STEELYARD_ADMIN_PASSWORD" ]; then \
	    printf '%s\n' "$$STEELYARD_ADMIN_PASSWORD" | $(BIN)/steelyard --instance $(INSTANCE) user create admin --admin --display-name Administrator --password-stdin; \
	  else \
	    $(BIN)/steelyard --instance $(INSTANCE) user create admin --admin --display-name Administrator; \
	  fi; \
	fi
	$(BIN)/steelyard --instance $(INSTANCE) serve --bind $(BIND)

test: install-test
	$(BIN)/ruff check server federation tests bench
	$(BIN)/ruff format --check server federation tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: install-test
	$(BIN)/ruff check server federation tests bench
	$(BIN)/ruff format --check server federation tests bench
	$(BIN)/mypy

demo: install
	$(BIN)/python -m server.demo

bench: install
	$(BIN)/python bench/timeline.py

clean-venv:
	rm -rf $(VENV)

schema: install
	$(BIN)/python -m server.storage.migrate
