# The front door: `make run` starts everything, `make test` runs the tests.
# Both install what they need first: the system packages they use (when missing,
# with apt-get), pipenv (pinned, in .tools/) and the locked dependencies (in .venv/).

PYTHON ?= python3
PIPENV_VERSION := 2026.10.3
VENV := .venv
export PIPENV_VENV_IN_PROJECT := 1
export PIPENV_VERBOSITY := -1

.PHONY: install run test test-fast lint typecheck format bench

# command:package pairs, installed by harness/system-packages when the command is missing.
RUN_PACKAGES := redis-server:redis-server
# The postgres-rabbitmq stack's throwaway servers (Debian keeps PostgreSQL's programs off
# PATH), and `ip` for the hosts (network namespaces): the tests and the bench start both.
STACK_PACKAGES := rabbitmq-server:rabbitmq-server '/usr/lib/postgresql/*/bin/initdb:postgresql' \
	ip:iproute2
TEST_PACKAGES := $(RUN_PACKAGES) $(STACK_PACKAGES) chromium:chromium
BENCH_PACKAGES := $(RUN_PACKAGES) $(STACK_PACKAGES) wrk:wrk

install: $(VENV)/.synced

.tools/bin/pipenv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet pipenv==$(PIPENV_VERSION)

$(VENV)/.synced: Pipfile.lock .tools/bin/pipenv
	.tools/bin/pipenv sync --dev
	touch $@

run: install
	@harness/system-packages $(RUN_PACKAGES)
	$(VENV)/bin/python -m harness.run

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

typecheck: install
	$(VENV)/bin/mypy

# Both lanes: the fast one (in-process unit tests) and the slow one (real processes).
test: lint typecheck
	@harness/system-packages $(TEST_PACKAGES)
	$(VENV)/bin/pytest

# The fast lane alone: no process started, a few seconds.
test-fast: install
	$(VENV)/bin/pytest -m "not slow"

# Not tests: measurements against baselines run in the same script (bench/).
bench: install
	@harness/system-packages $(BENCH_PACKAGES)
	$(VENV)/bin/python -m bench
