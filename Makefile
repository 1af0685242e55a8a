# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.10
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast lint bench clean venv peers

venv: $(STAMP)

# Rebuilt when missing or when the project's dependency list changes.
# pip stays quiet (no progress bars in a log); each step says what it does and what it took.
$(STAMP): pyproject.toml
	@test -x $(PY) || { echo "venv: creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	@echo "venv: upgrading pip"
	@$(PY) -m pip install --quiet --upgrade pip > $(VENV)/pip.log 2>&1 || { tail -n 30 $(VENV)/pip.log; exit 1; }
	@echo "venv: installing kdsnn and its dependencies (torch, lava-nc, nir, ...) into $(VENV); several minutes on a fresh machine (pip's own output: $(VENV)/pip.log)"
	@t0=$$(date +%s); $(PY) -m pip install --quiet --progress-bar off -e '.[dev]' >> $(VENV)/pip.log 2>&1 || \
	  { echo "venv: pip failed; the end of $(VENV)/pip.log:"; tail -n 30 $(VENV)/pip.log; exit 1; }; \
	  echo "venv: installed $$($(PY) -m pip list --format=freeze 2>/dev/null | wc -l) packages in $$(( $$(date +%s) - t0 )) s"
	@touch $(STAMP)

demo: $(STAMP)
	@echo "demo: distill a spiking CNN on mnist5k (3 epochs, default teacher first), then export it to Lava"
	$(VENV)/bin/kdsnn distill --dataset mnist5k --arch cnn --kd both --epochs 3 -o runs/demo
	$(VENV)/bin/kdsnn export runs/demo/student.pt --target lava --samples 200 -o runs/demo/export

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

# Peer frameworks that cannot install beside kdsnn's pins, each in its own folder put first on
# PYTHONPATH by the tests that run them (torch etc. from the venv): Sinabs 3.1.3 needs nir 1.0.4.
peers: $(STAMP)
	$(PY) -m pip install --quiet --no-deps --upgrade --target .peers/sinabs sinabs==3.1.3 nir==1.0.4 nirtorch==2.0.2 pbr

lint: $(STAMP)
	$(VENV)/bin/ruff check kdsnn compiler backends cli.py tests bench

clean:
	rm -rf $(VENV) runs
