# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.10
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast lint bench clean venv

venv: $(STAMP)

# Rebuilt when missing or when the project's dependency list changes.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/kdsnn distill --dataset mnist5k --arch cnn --kd both --epochs 3 -o runs/demo
	$(VENV)/bin/kdsnn export runs/demo/student.pt --target lava --samples 200 -o runs/demo/export

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check kdsnn compiler backends cli.py tests bench

clean:
	rm -rf $(VENV) runs
