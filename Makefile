# probtalk3d — every target creates .venv and installs when needed, then calls the CLI.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
CLI    := $(VENV)/bin/probtalk3d
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1

.PHONY: install gl validator test demo demo-train validate bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	@touch $(STAMP)

# Offscreen OpenGL for pyrender: OSMesa (CPU) via apt when missing; EGL is used where a GPU driver provides it.
gl:
	@ldconfig -p 2>/dev/null | grep -q libOSMesa || { \
	  if command -v apt-get >/dev/null 2>&1; then \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO apt-get install -y -q libosmesa6 >/dev/null 2>&1 || { $$SUDO apt-get update -q >/dev/null 2>&1 && $$SUDO apt-get install -y -q libosmesa6 >/dev/null; } || echo "warning: could not install libosmesa6; rendering will try EGL"; \
	  else echo "warning: libOSMesa not found and apt-get is unavailable; install OSMesa or EGL for rendering"; fi; }

install: $(STAMP) gl

# The Khronos glTF validator for the export tests, from npm (best effort: those two tests skip without Node.js).
validator: install
	@test -d $(VENV)/node/node_modules/gltf-validator || { command -v npm >/dev/null 2>&1 && \
	  npm install --prefix $(VENV)/node gltf-validator --no-audit --no-fund --silent >/dev/null 2>&1; } || \
	  echo "note: could not install the gltf-validator npm package; its export tests will be skipped"

test: install validator
	$(PY) -m pytest -q

demo: install
	$(CLI) demo --out demo_out

demo-train: install
	$(CLI) demo-train --work work_demo

validate: install
	$(PY) benchmarks/validity.py --out benchmarks/results/validity.json

bench: install
	$(PY) benchmarks/run_all.py --out benchmarks/results

clean:
	rm -rf $(VENV) demo_out work_demo .pytest_cache build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
