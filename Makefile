# Quick start: `make demo` and `make test`. Both create .venv when missing and
# install the project from its own files. torch==2.13.0 (a CPU wheel) is installed
# only when no torch is importable in the venv; pyproject keeps the range torch>=2.2.
PYTHON ?= python3
# test processes: one per core (pytest-xdist); each test file runs whole in one of them,
# so its module fixtures are built once. TEST_WORKERS=0 runs the suite in this process.
TEST_WORKERS ?= auto
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
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

bench: $(STAMP)
	$(BIN)/python benchmarks/synthetic.py

clean:
	rm -rf $(VENV) build *.egg-info demo_output
