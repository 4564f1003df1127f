# `make demo` serves the dashboard; `make test` runs the test suite. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt requirements-offline.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps -r requirements-offline.txt
	touch $@

demo: install
	$(BIN)/python app.py

test: install
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .pytest_cache
