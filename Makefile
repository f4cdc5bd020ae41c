# The two set-up commands (README): `make demo` runs the main job, `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test drills lint typecheck install serve clean-data

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

## Database (embedded unless DATABASE_URL is set), migrations, seed data if empty, API on :8000.
demo: $(STAMP)
	$(BIN)/python -m app demo

## Lint, type-check and the whole test suite on real PostgreSQL.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy app flags backfill migrations
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -n 2 --dist loadgroup

## The slow reliability drills (kill -9 loops, PostgreSQL restarts, Unleash outages,
## schemathesis, the big mutation storm): about 4 minutes, not part of `make test`.
drills: $(STAMP)
	$(BIN)/python -m pytest tests/drills -m drill

serve: $(STAMP)
	$(BIN)/python -m app serve

clean-data:
	rm -rf .data
