# Two commands set everything up: `make demo` runs the app on the demo workspace, `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: demo test lint bench bench-quick clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# setuptools warns at every editable install that replydesk/ sits in the working directory: it is
# the package itself (storage/, providers/ and tui/ install as replydesk.storage, ...), so say nothing.
INSTALL := PYTHONWARNINGS="ignore:Editable installation" $(BIN)/python -m pip install --quiet

$(STAMP): pyproject.toml | $(BIN)/python
	$(INSTALL) -e .
	touch $@

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(INSTALL) -e '.[test]'
	touch $(STAMP) $@

# Byte-compile our sources where PYTHONDONTWRITEBYTECODE would leave them to be compiled at every
# start (about 0.1 s of the console's start-up); incremental, so cheap when nothing changed.
COMPILE := $(BIN)/python -m compileall -q replydesk storage providers tui bench >/dev/null

demo: $(STAMP)
	$(COMPILE)
	$(BIN)/replydesk demo $(ARGS)

test: $(TEST_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(TEST_STAMP)
	$(BIN)/ruff check .

bench: $(TEST_STAMP)
	$(COMPILE)
	$(BIN)/python -m bench run $(ARGS)

bench-quick: $(TEST_STAMP)
	$(COMPILE)
	$(BIN)/python -m bench run --quick $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
