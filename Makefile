# The two commands of the README: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.liftnn-installed

.PHONY: demo test test-all lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@# torch 2.13.0 first (the CPU build on disk here); the peers are optional, so a failure is not fatal.
	$(PY) -m pip install -q torch==2.13.0 || echo "liftnn: torch 2.13.0 not installed; torch peers will be skipped"
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m pip install -q casadi || echo "liftnn: casadi not installed; the ipopt-ms peer will be skipped"
	$(PY) -m pip install -q optimistix || echo "liftnn: optimistix not installed; the optimistix peers will be skipped"
	$(PY) -m pip install -q torch-levenberg-marquardt==1.2.3 || echo "liftnn: torch-levenberg-marquardt not installed; torch-lm will be skipped"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/liftnn demo

# In CI (CI=true) the slow checks are skipped; `make test-all` runs everything.
test: $(STAMP)
	$(PY) -m pytest -q $(if $(CI),-m "not slow",) -p no:cacheprovider

test-all: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests

clean:
	rm -rf $(VENV) build dist src/*.egg-info
