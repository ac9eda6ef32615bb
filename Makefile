# Everything sets itself up: `make demo` and `make test` work on a fresh clone (Python 3.11+, a JDK 17+, Maven).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
JARS_DIR := consumer/kcl/jars
JARS_STAMP := $(JARS_DIR)/.resolved
BRIDGE_JAR := $(JARS_DIR)/streams-bridge.jar
MVN ?= mvn
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install jars ruler demo test test-unit test-engine test-filters-differential faults faults-ci image-test bench bench-smoke lint format clean

help: ## Show the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

install: $(VENV)/.installed ## Create the virtualenv and install the package with its dev tools

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

jars: $(BRIDGE_JAR) ## Resolve the pinned KCL/adapter jars with Maven and compile the bridge

$(JARS_STAMP): consumer/kcl/pom.xml
	rm -rf $(JARS_DIR) && mkdir -p $(JARS_DIR)
	$(MVN) -B -q -f consumer/kcl/pom.xml dependency:copy-dependencies \
		-DincludeScope=runtime -DoutputDirectory=$(abspath $(JARS_DIR))
	touch $@

$(BRIDGE_JAR): consumer/kcl/StreamsBridge.java $(JARS_STAMP)
	rm -rf $(JARS_DIR)/.classes && mkdir -p $(JARS_DIR)/.classes
	javac -Xlint:deprecation -d $(JARS_DIR)/.classes -cp '$(JARS_DIR)/*' consumer/kcl/StreamsBridge.java
	jar cf $@ -C $(JARS_DIR)/.classes .
	rm -rf $(JARS_DIR)/.classes

# AWS's event-pattern matcher (event-ruler) for the filters' differential test: test-only, resolved into build/ruler,
# never into the jars the image ships.
RULER_DIR := build/ruler
RULER_STAMP := $(RULER_DIR)/.resolved
RULER_CLASS := $(RULER_DIR)/classes/RulerRunner.class

ruler: $(RULER_CLASS) ## Resolve event-ruler with Maven and compile the test runner that judges filter patterns with it

$(RULER_STAMP): tests/ruler/pom.xml
	rm -rf $(RULER_DIR)/lib && mkdir -p $(RULER_DIR)/lib
	$(MVN) -B -q -f tests/ruler/pom.xml dependency:copy-dependencies \
		-DincludeScope=runtime -DoutputDirectory=$(abspath $(RULER_DIR)/lib)
	touch $@

$(RULER_CLASS): tests/ruler/RulerRunner.java $(RULER_STAMP)
	rm -rf $(RULER_DIR)/classes && mkdir -p $(RULER_DIR)/classes
	javac -Xlint:deprecation -d $(RULER_DIR)/classes -cp '$(RULER_DIR)/lib/*' tests/ruler/RulerRunner.java

demo: install jars ## Run the products example on a local moto endpoint (add ARGS=--keep-running to stay up)
	$(BIN)/consumer demo $(ARGS)

# The alert-rule tests run promtool; tests/install-promtool.sh links one on PATH or installs a pinned one.
PROMTOOL := $(BIN)/promtool

$(PROMTOOL): tests/install-promtool.sh | $(VENV)/.installed
	bash tests/install-promtool.sh $@

test: install jars ruler $(PROMTOOL) ## Run the whole test suite (unit + the real engine against moto)
	@CONSUMER_REQUIRE_RULER=1 $(BIN)/pytest $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests: the test tree is broken" >&2; exit 1; fi; \
	exit $$status

faults: install jars ## The fault suite on the real engine; ends with a table of what was written, delivered, lost
	@$(BIN)/pytest -m faults tests/integration/faults $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no fault scenarios: the suite is broken" >&2; exit 1; fi; \
	exit $$status

faults-ci: install jars ## The fault scenarios CI runs: one or two per kind of fault (about a third of make faults)
	@FAULTS_SUBSET=ci $(BIN)/pytest -m faults tests/integration/faults $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no fault scenarios: the suite is broken" >&2; exit 1; fi; \
	exit $$status

image-test: install ## Build the container image with podman and run it against moto (slow; installs podman as root)
	bash tests/image/prepare.sh
	@$(BIN)/pytest -m image tests/image $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no image test: the suite is broken" >&2; exit 1; fi; \
	exit $$status

test-unit: install $(PROMTOOL) ## Only the fast tests (no JVM: the event-ruler differential is left to make test)
	$(BIN)/pytest -m "not engine and not faults and not image and not bench and not differential" $(PYTEST_ARGS)

# FILTERS_DIFFERENTIAL_EXAMPLES patterns, each judged against 6 generated records (make test runs 400).
FILTERS_DIFFERENTIAL_EXAMPLES ?= 5000

test-filters-differential: install ruler ## The filters against event-ruler on many more generated patterns (a few minutes)
	CONSUMER_REQUIRE_RULER=1 FILTERS_DIFFERENTIAL_EXAMPLES=$(FILTERS_DIFFERENTIAL_EXAMPLES) \
		$(BIN)/pytest -m differential tests/ruler $(PYTEST_ARGS)

test-engine: install jars ## Only the tests that run the real engine
	$(BIN)/pytest -m engine $(PYTEST_ARGS)

BENCH_ARGS ?=
BENCH_OUT ?= bench/results
BENCH_SMOKE_OUT ?= build/bench-smoke

$(VENV)/.bench-installed: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $@

bench: install jars $(VENV)/.bench-installed ## Benchmarks vs a Java reference and a boto3 poller on moto; rewrites BENCHMARKS.md (~15 min)
	$(BIN)/python -m bench.run --out $(BENCH_OUT) $(BENCH_ARGS)
	$(BIN)/python -m bench.report --results $(BENCH_OUT) --markdown BENCHMARKS.md

bench-smoke: install jars $(VENV)/.bench-installed ## The benchmarks with small N (a few minutes), written to build/bench-smoke
	$(BIN)/python -m bench.run --smoke --out $(BENCH_SMOKE_OUT) $(BENCH_ARGS)
	$(BIN)/python -m bench.report --results $(BENCH_SMOKE_OUT) --markdown $(BENCH_SMOKE_OUT)/BENCHMARKS.md

lint: install $(VENV)/.bench-installed ## ruff (lint + format check) and mypy --strict (bench/ included)
	$(BIN)/ruff check consumer tests bench
	$(BIN)/ruff format --check consumer tests bench
	$(BIN)/mypy

format: install ## Apply ruff's formatting and safe fixes
	$(BIN)/ruff format consumer tests bench
	$(BIN)/ruff check --fix consumer tests bench

clean: ## Remove the virtualenv, the jars and caches
	rm -rf $(VENV) $(JARS_DIR) .pytest_cache .mypy_cache .ruff_cache
