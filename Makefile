# Quick start: `make demo` and `make test`. Both create .venv when missing and
# install the project from its own files. torch==2.13.0 (a CPU wheel) is installed
# only when no torch is importable in the venv; pyproject keeps the range torch>=2.2.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.trends-ivae-installed

.PHONY: demo test setup bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install "torch==2.13.0"
	$(BIN)/python -m pip install -e ".[test]"
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/trends-ivae demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/synthetic.py

clean:
	rm -rf $(VENV) build *.egg-info demo_output
