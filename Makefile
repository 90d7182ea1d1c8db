# `make run` trains and ranks the embedded default experiment; `make venv` creates the
# virtual environment (.venv) with genbench and every plugin under plugins/ when it is missing;
# `make test` = the tests (README's command).
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: venv run test clean

venv: $(BIN)/genbench-installed

$(BIN)/genbench-installed: pyproject.toml $(wildcard plugins/*/pyproject.toml)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	for plugin in plugins/*/; do $(BIN)/python -m pip install --quiet --no-deps -e "$$plugin" || exit 1; done
	touch $@

run: $(BIN)/genbench-installed
	$(BIN)/genbench run

test: $(BIN)/genbench-installed
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) genbench-results .pytest_cache .hypothesis
