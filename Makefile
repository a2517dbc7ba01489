# The two commands a newcomer needs are `make run` and `make test`; everything else is for
# contributors. Every target builds the virtualenv on demand and is quick once it exists.

SHELL := /bin/bash
.DEFAULT_GOAL := help

# python3.11 is the supported interpreter; fall back to python3 where it has another name.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8501
DEVICE ?= cpu
BENCH_ARGS ?=
UI_BENCH_ARGS ?=
MODELS ?=
PYTEST_ARGS ?=
CHROMIUM ?= /usr/bin/chromium
SALIENCY_CACHE ?= models_cache
export SALIENCY_CACHE CHROMIUM

# Stamps record which requirements the venv was last installed from, so pip only runs when
# a requirements file changed (or after a failed install, which leaves the stamp untouched).
REQ_STAMP := $(VENV)/.req-stamp
DEV_STAMP := $(VENV)/.dev-stamp

ENGINE_PORT ?= 8000
ENGINE_ARGS ?=

.PHONY: help run serve test test-fast bench bench-batching bench-generation bench-generation-inseq load train-bundled fetch lint typecheck docs venv dev-venv browser-deps serve-engine test-engine bench-serve hostile fuzz audit install-check coverage test-dataset bench-dataset bench-costs test-lm test-costs test-vit bench-localisation

help:
	@echo "make run     start the workbench on http://localhost:$(PORT) (offline, bundled models)"
	@echo "make test    run the whole test suite (installs dev requirements and chromium if needed)"
	@echo "make test-fast   the quick tier: no browser, slow, long, install or full tests (a few minutes)"
	@echo "make fetch MODELS=\"resnet50 ...\"   download model weights into \$$SALIENCY_CACHE"
	@echo "make train-bundled | make bench [DEVICE=cuda BENCH_ARGS=...] | make lint | make docs"
	@echo "make serve-engine [ENGINE_PORT=8000 ENGINE_ARGS=...]   the engine as a Ray Serve service"
	@echo "make test-engine | make bench-serve   the engine service's tests with its long ones; its benchmark"
	@echo "make test-lm   the Next word modes (Text, Compare), a mirror-fetched LM in chromium and the bundled language model, long tests included"
	@echo "make bench-batching | make load   the scheduler's batching gain; the browser load test"
	@echo "make bench-generation [GENERATION_ARGS=--quick]   language models: ours vs Captum vs the floor"
	@echo "make bench-generation-inseq [GENERATION_ARGS=--quick]   the same with inseq beside them (installed into .bench-inseq/)"
	@echo "make coverage   which method runs on which model family -> docs/coverage.md (+ its long test)"
	@echo "make test-vit   Hugging Face image classifiers of every family and the attention methods, long tests included"
	@echo "make bench-localisation [LOCALISATION_ARGS=--n 32]   pointing game and mass in mask of each method on shapes-vit and shapes-cnn"
	@echo "make test-dataset | make bench-dataset   the Dataset page's tests with its long ones; its benchmark"
	@echo "make bench-costs [COSTS_ARGS=--quick] | make test-costs   the cost estimates against the measured time; their tests with the long ones"
	@echo "make hostile (the full hostile-input tests) | make fuzz (Hypothesis, 10k examples) | make audit"
	@echo "make install-check   a fresh venv installs the wheel and the checkout, then saliency explain"
	@echo "Test tiers are pytest markers (pytest.ini): slow, browser, gpu; long, install and full run"
	@echo "only when selected: make test-engine, test-dataset, install-check and hostile select them with -m"

$(PY):
	$(PYTHON) -m venv $(VENV)

$(REQ_STAMP): requirements.txt | $(PY)
	$(PY) -m pip install -r requirements.txt
	touch $@

$(DEV_STAMP): requirements.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install -r requirements-dev.txt
	touch $@ $(REQ_STAMP)

venv: $(REQ_STAMP)
dev-venv: $(DEV_STAMP)

# Offline on purpose: the app must work from the bundled and already fetched weights alone.
run: $(REQ_STAMP)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m workbench.serve run app.py --server.port $(PORT) --server.headless true

# The hosted configuration (workbench/serve.py, also the Docker image's): all interfaces, no
# tracebacks, warm start, metrics on METRICS_PORT, offline. Sign-in is on when
# .streamlit/secrets.toml has an [auth] section (docs/DEPLOY.md).
METRICS_PORT ?= 9464
serve: $(REQ_STAMP)
	SALIENCY_METRICS_PORT=$(METRICS_PORT) $(PY) -m workbench.serve hosted app.py --server.port $(PORT)

# Browser tests need Debian's chromium (Playwright's own browser downloads are not used).
# As root we install it; otherwise the browser tests skip and say why.
browser-deps:
	@if [ -x "$(CHROMIUM)" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "Installing Debian chromium for the browser tests"; \
		apt-get update -qq < /dev/null && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium < /dev/null; \
	else \
		echo "NOTE: $(CHROMIUM) is missing and we are not root: browser tests will be skipped"; \
		echo "      (install it with: sudo apt-get install chromium)"; \
	fi

# pytest exits 5 when it collected nothing: a suite that ran no test is a failure, not a pass.
# pytest.ini's addopts leave out the long, install and full tiers (a -m of one's own replaces it).
test: $(DEV_STAMP) browser-deps
	@rc=0; $(PY) -m pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "ERROR: pytest collected no tests"; exit 1; fi; \
	exit $$rc

# The quick tier while editing: no chromium, nothing marked slow, and none of the opt-in tiers;
# the native guided rule is built only if a selected test requests it.
FAST_MARKERS := not browser and not slow and not long and not install and not full
test-fast: $(DEV_STAMP)
	$(PY) -m pytest -q -m "$(FAST_MARKERS)" $(PYTEST_ARGS)

# Datasets (issue 24) with their long tests: the Dataset page in chromium and under AppTest,
# the CLI's --clusters report, the embedding (make test runs the quick ones).
DATASET_TESTS := tests/test_dataset_library.py tests/test_dataset_hostile.py \
	tests/test_dataset_shortcut.py tests/test_app_dataset.py tests/test_browser_dataset.py \
	tests/test_cli_clusters.py
test-dataset: $(DEV_STAMP) browser-deps
	$(PY) -m pytest -q -m "not install and not full" $(DATASET_TESTS) $(PYTEST_ARGS)

# Every hostile-input case of tests/support/hostile_cases.py in the browser, and twenty large
# uploads for the memory test: those tests' `full` variants (make test runs their `quick` ones).
hostile: $(DEV_STAMP) browser-deps
	$(PY) -m pytest -q -m full tests/test_hostile_browser.py tests/test_hostile_memory.py $(PYTEST_ARGS)

# Hypothesis at full strength: 10,000 examples per target (make test runs a few dozen).
fuzz: $(DEV_STAMP)
	$(PY) -m pytest -q --hypothesis-profile=fuzz tests/test_hostile_properties.py $(PYTEST_ARGS)

# Known vulnerabilities in the pinned requirements (pip-audit asks PyPI's advisory service) and
# Bandit on our code; findings we keep are justified in .bandit-baseline.json and
# docs/SECURITY.md, so only new ones fail.
audit: $(DEV_STAMP)
	$(PY) -m pip_audit -r requirements.txt -r requirements-dev.txt --progress-spinner off
	$(PY) -m bandit -q -r saliency_core workbench pages app.py -s B101 -b .bandit-baseline.json

bench: $(DEV_STAMP)
	$(PY) -m benchmarks --device $(DEVICE) $(BENCH_ARGS)
	$(PY) -m benchmarks.ui $(UI_BENCH_ARGS)
	$(PY) -m benchmarks.batching --device $(DEVICE) $(BATCHING_ARGS)

# What the scheduler's batching gains when sessions queue the same model, method and settings;
# BATCHING_ARGS="--write" updates BENCHMARKS.md.
BATCHING_ARGS ?=
bench-batching: $(DEV_STAMP)
	$(PY) -m benchmarks.batching --device $(DEVICE) $(BATCHING_ARGS)

# Next-token attribution of a language model against Captum's LLMGradientAttribution and the
# floor (benchmarks/generation.py); GENERATION_ARGS="--quick" for the small CPU setting.
bench-generation: $(DEV_STAMP)
	$(PY) -m benchmarks.generation --device $(DEVICE) $(GENERATION_ARGS)
# inseq is no dependency of the project: it goes into a folder of its own, on the path of this
# benchmark only.
.bench-inseq/.stamp: benchmarks/requirements-inseq.txt $(DEV_STAMP)
	$(PY) -m pip install --quiet --no-deps --target .bench-inseq -r benchmarks/requirements-inseq.txt
	touch $@
bench-generation-inseq: .bench-inseq/.stamp
	PYTHONPATH=.bench-inseq $(PY) -m benchmarks.generation --device $(DEVICE) $(GENERATION_ARGS)
# Which method runs on which model family (tiny random-weight models, offline): rewrites
# docs/coverage.md, then the long test that builds every family.
coverage: $(DEV_STAMP)
	$(PY) -m benchmarks.coverage
	$(PY) -m pytest -q -m long tests/test_bench_coverage.py $(PYTEST_ARGS)
# Datasets: images/s against a Captum loop and the floor, memory per 1,000 images, clustering
# 10,000 maps; DATASET_ARGS="--images 1000" for more than --quick's 240 images.
DATASET_ARGS ?= --quick
bench-dataset: $(DEV_STAMP)
	$(PY) -m benchmarks.dataset --device $(DEVICE) $(DATASET_ARGS)
# How close the server's cost estimates come to the measured time (benchmarks/costs.py), in two
# orders of requests per model; COSTS_ARGS="--quick --write" updates BENCHMARKS.md.
bench-costs: $(DEV_STAMP)
	$(PY) -m benchmarks.costs --device $(DEVICE) $(COSTS_ARGS)

# Each method's pointing game and mass in mask on 500 held-out shapes (docs/shapes_vit.md).
bench-localisation: $(DEV_STAMP)
	$(PY) -m benchmarks.localisation $(LOCALISATION_ARGS)

# The cost estimates' tests with their long ones (the text order, the 48-MP photo, an expensive
# text link's progress and Stop in chromium).
test-costs: $(DEV_STAMP) browser-deps
	$(PY) -m pytest -q -m "not install and not full" tests/test_app_costs.py tests/test_app_budget.py tests/test_browser_budget.py $(PYTEST_ARGS)

# The browser load test (benchmarks/load.py): concurrent chromium sessions against the hosted
# configuration (sign-in off), without and then with a heavy-link session; a table with p50/p95
# per action, errors, tracebacks, server memory and the heavy/baseline p95 ratio; exits 1 on any
# error or traceback. Defaults: LOAD_ARGS="--sessions 20 --minutes 5" (each of two phases);
# add --json PATH for every figure. `make test` runs its --smoke pass.
LOAD_ARGS ?=
load: $(DEV_STAMP) browser-deps
	$(PY) -m benchmarks.load $(LOAD_ARGS)

# The engine as a Ray Serve service (local Ray, or the cluster in RAY_ADDRESS); point the app at
# it with SALIENCY_ENGINE_URL=http://127.0.0.1:$(ENGINE_PORT) make run.
serve-engine: $(REQ_STAMP)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m saliency_core serve --port $(ENGINE_PORT) $(ENGINE_ARGS)

# The engine service's tests including its `long` ones (a replica killed and restarted).
test-engine: $(DEV_STAMP)
	$(PY) -m pytest -m "not install and not full" tests/test_engine_service.py $(PYTEST_ARGS)

# The Text page's Next word mode and the bundled language model (patterns-lm), long ones included.
# Hugging Face image classifiers of every family on the Image page, and both attention
# methods in chromium: the long tests behind the ViT cases `make test` runs.
test-vit: $(DEV_STAMP) browser-deps
	$(PY) -m pytest -m "not install and not full" tests/test_app_image_hf.py tests/test_browser_vit.py tests/test_methods_attention.py tests/test_engine_geometry.py tests/test_shapes_vit.py tests/test_browser_shapes_vit.py $(PYTEST_ARGS)

test-lm: $(DEV_STAMP)
	$(PY) -m pytest -m "not install and not full" tests/test_app_nextword.py tests/test_app_compare_nextword.py tests/test_patterns_lm.py tests/test_browser_nextword.py tests/test_browser_nextword_hub.py tests/test_browser_compare_nextword.py $(PYTEST_ARGS)

# Requests/s and p95 latency of the engine service for 1 and 2 replicas, batching on and off;
# BENCH_ARGS="--write" updates BENCHMARKS.md.
bench-serve: $(DEV_STAMP)
	$(PY) -m benchmarks.serve $(BENCH_ARGS)

# The issue-15 proof as a new user (the `install` tests with the rest of their file): a plain venv (no shared site-packages) pip-installs the
# wheel, then the checkout, with their dependencies from pip's configured registry, and
# `saliency explain` writes a folder's HTML report (about 14 min on 2 loaded cores: PyTorch is
# installed afresh, so the hang dump waits 1800 s instead of pytest.ini's 300 s).
install-check: $(DEV_STAMP)
	$(PY) -m pytest -q -m "not long and not full" -o faulthandler_timeout=1800 tests/test_packaging_fresh_venv.py $(PYTEST_ARGS)

train-bundled: $(REQ_STAMP)
	$(PY) -m saliency_core train-bundled

fetch: $(REQ_STAMP)
	@if [ -z "$(MODELS)" ]; then echo 'usage: make fetch MODELS="resnet50 ..."'; exit 2; fi
	$(PY) -m saliency_core fetch $(MODELS)

# ruff over everything, then mypy over the library (settings in pyproject.toml); CI runs both.
lint: $(DEV_STAMP)
	$(PY) -m ruff check .
	$(PY) -m mypy

typecheck: $(DEV_STAMP)
	$(PY) -m mypy

# The API reference and guides as a static site in site/ (offline: no theme or plugin fetches).
docs: $(DEV_STAMP)
	$(PY) -m mkdocs build --strict --site-dir site
