# fhir-hcc: `make demo` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SEKMET_VENV := .fhir-server/venv
SEKMET_LOCK := tests/integration/sekmet-requirements.lock
DEMO_OUT ?= demo-out

.PHONY: install demo test lint typecheck r-deps chromium jre fhir-server bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: install
	$(BIN)/fhir-hcc run fixtures/salvage2004 --out-dir $(DEMO_OUT)

# R (survival, cmprsk) cross-checks the published numbers; installed from Debian packages.
r-deps:
	@if command -v Rscript >/dev/null 2>&1 && Rscript -e 'library(survival); library(cmprsk)' >/dev/null 2>&1; then \
		echo "R with survival and cmprsk: present"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
			r-base-core r-cran-survival r-cran-cmprsk; \
	else \
		echo "R cannot be installed here (no apt-get or not root): the R cross-check tests will be skipped"; \
	fi

# Headless Chromium opens report.html in a test (images load, the page is not blank); from Debian.
chromium:
	@if command -v chromium >/dev/null 2>&1; then \
		echo "chromium: present"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
			chromium; \
	else \
		echo "Chromium cannot be installed here (no apt-get or not root): the browser test will be skipped"; \
	fi

# A headless Java runtime for the Spark engine's tests (PySpark 4 needs Java 17+), from Debian.
jre:
	@if command -v java >/dev/null 2>&1; then \
		echo "java: present ($$(java -version 2>&1 | head -n 1))"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
			default-jre-headless; \
	else \
		echo "Java cannot be installed here (no apt-get or not root): the Spark tests will be skipped"; \
	fi

# The SEKMET FHIR server for integration tests, in its own venv (its pins must not leak into ours).
fhir-server: $(SEKMET_VENV)/bin/sekmet

$(SEKMET_VENV)/bin/sekmet: $(SEKMET_LOCK)
	$(PYTHON) -m venv $(SEKMET_VENV)
	$(SEKMET_VENV)/bin/pip install --quiet -r $(SEKMET_LOCK)
	touch $@

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

test: install r-deps chromium jre fhir-server lint typecheck
	$(BIN)/pytest

bench: install
	$(BIN)/python bench/cohort_benchmark.py

clean:
	rm -rf $(VENV) .fhir-server $(DEMO_OUT) .pytest_cache .ruff_cache
