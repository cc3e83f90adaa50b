# NouMa Mailer. `make demo` and `make test` set everything up themselves on a fresh machine.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
#: Debian's Chromium drives the end-to-end browser test (Playwright never downloads a browser here).
CHROMIUM := /usr/bin/chromium

.PHONY: demo test lint messages bench clean browser bench-web bench-digests bench-campaigns

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

## Run the whole mailer on the embedded default (SQLite, in-process broker, .eml outbox).
demo: $(STAMP)
	$(BIN)/mailer demo

## Debian's Chromium for the browser test, installed when missing (as root, from Debian's archive).
## A failure here is not fatal: the browser test then skips locally and fails under CI=1.
browser:
	@test -x $(CHROMIUM) || { export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -qq --no-install-recommends chromium \
	  || { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; }; } \
	  || echo "chromium could not be installed: the browser test will skip (and fail under CI=1)"

## Install, lint, type-check and run every test (SQLite, PostgreSQL, Redis, Chromium).
test: $(STAMP) browser
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
	  --width 100 --ignore-obsolete --no-fuzzy-matching

## Every benchmark; each prints its figures beside a baseline measured in the same run.
bench: bench-web bench-digests bench-campaigns

## Web process: one-click and webhook latency against GET /healthz; applying events against INSERT.
bench-web: $(STAMP)
	$(BIN)/python tests/bench/bench_web.py
	$(BIN)/python tests/bench/bench_web.py --postgres-url postgresql://postgres@127.0.0.1:5432/test

## Tender alert digests at scale: 100,000 recipients x 3 searches, 5,000 tenders, PostgreSQL,
## Redis, 2 worker processes, the fake SendGrid (BENCH_ARGS="--recipients 2000" for a short run).
bench-digests: $(STAMP)
	$(BIN)/python -m tests.bench.bench_digests $(BENCH_ARGS)

## Campaign benchmark: 1,000,000 recipients on PostgreSQL + Redis, 2 worker processes, vs the naive
## design on 20,000 (BENCH_ARGS="--recipients 20000 --naive-sample 1000" for a quick run).
bench-campaigns: $(STAMP)
	$(BIN)/python -m tests.bench.campaigns $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
