# The front door: `make run` starts everything, `make test` runs the tests.
# Both install what they need first: pipenv (pinned, in .tools/) and the locked
# dependencies (in .venv/).

PYTHON ?= python3
PIPENV_VERSION := 2026.10.3
VENV := .venv
export PIPENV_VENV_IN_PROJECT := 1
export PIPENV_VERBOSITY := -1

.PHONY: install run test lint format bench

install: $(VENV)/.synced

.tools/bin/pipenv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet pipenv==$(PIPENV_VERSION)

$(VENV)/.synced: Pipfile.lock .tools/bin/pipenv
	.tools/bin/pipenv sync --dev
	touch $@

run: install
	$(VENV)/bin/python bin/run

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: lint
	$(VENV)/bin/pytest

# Not tests: measurements against baselines run in the same script (bench/).
bench: install
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk) || \
		{ echo "make bench needs wrk: apt install wrk"; exit 1; }
	$(VENV)/bin/python -m bench
