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

.PHONY: demo test setup setup-dev apt toy toy-smoke vivo-toy clean

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
	# The Inception judge and CosyVoice2's official tokenizer, without their torchvision / torchaudio (pyproject's
	# bench and s3 extras say why).
	$(PIP) install -q --no-deps "torch-fidelity>=0.3" "s3tokenizer>=0.3.0"
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

# The toy OmniVIVO chain behind the shipped bundle (src/aromni/toyworld/assets/vivo; README "OmniVIVO"): LlamaGen VQ,
# t2i backbone, then the speech stage on the version-1 AR-Omni toy bundle's codec (shipped as vivo/speech), then the
# measurement. A stage whose run directory already holds checkpoints is resumed. VIVO_WORLD: a built version-2
# world (built here if missing).
VIVO_WORLD ?= runs/world
VIVO := runs/omnivivo
resume_if = $(if $(wildcard $(1)/checkpoints),--resume,)
vivo-toy: setup-dev
	test -f $(VIVO_WORLD)/manifest.json || $(VENV)/bin/aromni toyworld build --size full --out $(VIVO_WORLD)
	$(VENV)/bin/aromni llamagen vq-train --config configs/omnivivo/toy_vq.yaml --out $(VIVO)/vq_toy \
	  $(if $(wildcard $(VIVO)/vq_toy/checkpoints),--resume,--images $(VIVO_WORLD)/images/train)
	$(VENV)/bin/aromni llamagen t2i-train --config configs/omnivivo/toy_t2i.yaml --out $(VIVO)/t2i_run \
	  $(call resume_if,$(VIVO)/t2i_run) $(if $(wildcard $(VIVO)/t2i_run/checkpoints),,world=$(VIVO_WORLD))
	test -f $(VIVO)/speech/train.jsonl || $(VENV)/bin/aromni toyworld speech-manifest --world $(VIVO_WORLD) \
	  --out $(VIVO)/speech
	$(VENV)/bin/aromni omnivivo train --config configs/omnivivo/toy_speech.yaml --out $(VIVO)/speech_toy \
	  $(call resume_if,$(VIVO)/speech_toy) $(if $(wildcard $(VIVO)/speech_toy/checkpoints),,\
	  speech_tokenizer=src/aromni/toyworld/assets/vivo/speech export_copy_max_mb=8)
	$(VENV)/bin/aromni omnivivo eval --model $(VIVO)/speech_toy/omnivivo --vq $(VIVO)/vq_toy/tokenizer \
	  --world $(VIVO_WORLD) --out $(VIVO)/eval

clean:
	rm -rf $(VENV) .venv-runtime build dist *.egg-info demo_out
