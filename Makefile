# Fresh-machine entry points. `make demo` and `make test` each set up everything they need.
#
# torch is installed first and pinned: an unpinned torch (asked for by us or by a dependency)
# downloads several GB of CUDA wheels on a CPU-only machine.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_VERSION ?= 2.13.0
# espeak-ng: the toy world's voices; flite: its held-out synthesizer; wamerican: its lexicon (/usr/share/dict/words);
# chromium: the browser the web demo's test drives through Playwright (no browser download).
APT_PACKAGES := espeak-ng sox flite wamerican chromium
PYTEST_ARGS ?=

.PHONY: demo test setup setup-dev apt toy toy-smoke clean

$(VENV)/.created:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==$(TORCH_VERSION)
	touch $@

# Runtime install: enough for `aromni demo` (no espeak-ng needed, sample inputs ship with the package).
$(VENV)/.runtime: $(VENV)/.created pyproject.toml
	$(PIP) install -q -e ".[audio,image,data]" torch==$(TORCH_VERSION)
	touch $@

# Development install: test-only references (transformers) and every optional extra.
$(VENV)/.dev: $(VENV)/.created pyproject.toml
	$(PIP) install -q -e ".[dev]" torch==$(TORCH_VERSION)
	touch $@

setup: $(VENV)/.runtime
setup-dev: $(VENV)/.dev apt

# System packages for building the toy world (speech synthesis) and the browser test. Installs only what is missing.
apt:
	@missing=""; for p in espeak-ng sox flite chromium; do command -v $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	test -f /usr/share/dict/words || missing="$$missing wamerican"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = "0" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) >/dev/null; fi; \
	fi

demo: setup
	$(VENV)/bin/aromni demo --out demo_out

# The fuzz suite (tests/fuzz) writes its case counts per input family and outcome to $(VENV)/fuzz_report.json.
test: setup-dev
	AROMNI_FUZZ_REPORT=$(abspath $(VENV))/fuzz_report.json $(PY) -m pytest -q -n 2 --dist loadfile $(PYTEST_ARGS)

# The full toy-world recipe (about 2 hours on 2 CPU cores); see README "Toy world".
toy: setup-dev
	$(VENV)/bin/aromni toyworld train --config configs/toyworld/full.yaml --out runs/toy

toy-smoke: setup-dev
	$(VENV)/bin/aromni toyworld train --config configs/toyworld/smoke.yaml --out runs/toy-smoke

clean:
	rm -rf $(VENV) .venv-runtime build dist *.egg-info demo_out
