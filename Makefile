# The two commands the README opens with: `make run` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
DATA_DIR ?= .sampan

.PHONY: install run test test-unit test-e2e bench bench-scheduler bench-pod-startup bench-service clean

$(VENV)/.installed: pyproject.toml constraints.txt scripts/install.sh
	bash scripts/install.sh $(VENV)
	touch $@

install: $(VENV)/.installed

run: install
	$(VENV)/bin/sampan up --data-dir $(DATA_DIR) --sample-app

test: install
	$(PY) -m pytest -q -p no:cacheprovider tests

test-unit: install
	$(PY) -m pytest -q tests/unit tests/store

test-e2e: install
	$(PY) -m pytest -q tests/e2e

bench: install
	$(PY) -m bench.apiserver --store both

bench-scheduler: install
	$(PY) -m bench.scheduler

bench-pod-startup: install
	$(PY) -m bench.pod_startup

bench-service: install
	$(PY) -m bench.service

clean:
	rm -rf $(VENV) $(DATA_DIR)
