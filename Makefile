# The two commands of the README:  `make demo`  and  `make test`.
# Both create (or reuse) .venv, install what is missing, then run. Ray (the `ray` extra) is
# installed too, so that `make test` runs tests/test_ray.py on a local Ray instance.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# torch is pinned here so that pip takes the CPU wheel when one is at hand, and a
# matching CUDA build elsewhere; pyproject.toml itself accepts any torch >= 2.2.
TORCH  ?= torch==2.13.0

.PHONY: demo test setup clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@bash scripts/ensure_system_libs.sh
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[test,ray]"
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/xseason demo

test: $(STAMP)
	@bash scripts/ensure_system_libs.sh test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -q -ra tests

clean-venv:
	rm -rf $(VENV)
