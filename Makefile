# NouMa Mailer. `make demo` and `make test` set everything up themselves on a fresh machine.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint messages bench bench-campaigns clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

## Run the whole mailer on the embedded default (SQLite, in-process broker, .eml outbox).
demo: $(STAMP)
	$(BIN)/mailer demo

## Install, lint, type-check and run every test (SQLite, PostgreSQL, Redis).
test: $(STAMP)
	$(BIN)/ruff check mailer tests
	$(BIN)/mypy
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check mailer tests
	$(BIN)/ruff format --check mailer tests
	$(BIN)/mypy

## Extract translatable strings from Python and the .txt and .html templates; update fr and en.
messages: $(STAMP)
	$(BIN)/pybabel extract -F babel.cfg --ignore-dirs ".* __pycache__ var" --no-location \
	  --sort-output --project "NouMa Mailer" --copyright-holder NouMa \
	  --msgid-bugs-address ServiceClients@nouma.fr -o mailer/locale/messages.pot .
	$(BIN)/pybabel update -i mailer/locale/messages.pot -d mailer/locale \
	  --width 100 --ignore-obsolete

## Campaign benchmark: 1,000,000 recipients on PostgreSQL + Redis, 2 worker processes, vs the naive
## design on 20,000 (BENCH_ARGS="--recipients 20000 --naive-sample 1000" for a quick run).
bench-campaigns: $(STAMP)
	$(BIN)/python -m tests.bench.campaigns $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
