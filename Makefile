# The front door: `make run` starts everything, `make test` runs the tests.
# Each first installs what it needs: the system packages it uses (when missing, with
# apt-get as root; without root it prints the one `sudo apt-get install` line), pipenv
# (pinned, in .tools/) and the locked dependencies (in .venv/).

PYTHON ?= python3
export PYTHON
PIPENV_VERSION := 2026.10.3
PODMAN_COMPOSE_VERSION := 1.6.0
VENV := .venv
export PIPENV_VENV_IN_PROJECT := 1
export PIPENV_VERBOSITY := -1
# pip's, pipenv's and virtualenv's caches in the clone too: make writes nothing outside
# it but the temporary folder (README, *Systems*; harness/debian13 checks it).
export XDG_CACHE_HOME := $(CURDIR)/.run/cache
export XDG_DATA_HOME := $(CURDIR)/.run/data

.PHONY: install packages run test test-fast test-processes test-hosts test-compose test-contract lint \
	typecheck format \
	compose-lane bench upgrade-celery test-debian13 test-debian13-developer test-system-python

# CHECK:PACKAGE pairs, installed by harness/system-packages when the check fails. Every
# target's own list is checked before anything else runs, so a machine without root
# hears of all of them at once: python3-venv before the first venv is made.
INSTALL_PACKAGES := py:ensurepip:python3-venv
RUN_PACKAGES := redis-server:redis-server
# The postgres-rabbitmq stack's throwaway servers (Debian keeps PostgreSQL's programs off
# PATH), and `ip` for the hosts (network namespaces): the tests and the bench start both.
STACK_PACKAGES := rabbitmq-server:rabbitmq-server '/usr/lib/postgresql/*/bin/initdb:postgresql' \
	ip:iproute2
TEST_PACKAGES := $(RUN_PACKAGES) $(STACK_PACKAGES) chromium:chromium openssl:openssl
BENCH_PACKAGES := $(RUN_PACKAGES) $(STACK_PACKAGES) wrk:wrk
# docker-compose.yml under Podman (runc: the runtime that works on these machines), with
# stand-in base images built from Debian's archive (harness/images/build).
COMPOSE_PACKAGES := podman:podman runc:runc debootstrap:debootstrap openssl:openssl
# What `packages` checks: the target's own list (target-specific, so `make test` checks
# the tests' list once, before lint's install).
PACKAGES :=
run: PACKAGES := $(RUN_PACKAGES)
test: PACKAGES := $(TEST_PACKAGES)
bench: PACKAGES := $(BENCH_PACKAGES)

packages:
	@harness/system-packages $(INSTALL_PACKAGES) $(PACKAGES)

install: packages $(VENV)/.synced

.tools/bin/pipenv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet pipenv==$(PIPENV_VERSION)

.tools/bin/podman-compose: .tools/bin/pipenv
	.tools/bin/pip install --quiet podman-compose==$(PODMAN_COMPOSE_VERSION)

$(VENV)/.synced: Pipfile.lock .tools/bin/pipenv
	.tools/bin/pipenv sync --dev
	touch $@

run: install
	$(VENV)/bin/python -m harness.run

# lint-imports: the import layers in pyproject.toml (no import circle).
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

typecheck: install
	$(VENV)/bin/mypy

# Every lane: the fast one (in-process unit tests) and the slow ones (real processes, and
# hosts of their own), in TEST_PROCESSES processes (pytest-xdist): most of a slow test's
# time is spent waiting on real processes, which another test's can use (docs/testing.md).
TEST_PROCESSES ?= 3
test: lint typecheck
	$(VENV)/bin/pytest -n $(TEST_PROCESSES) -m "not compose"

# The fast lane alone: no process started, a few seconds.
test-fast: install
	$(VENV)/bin/pytest -m "not slow"

# The real processes on this machine, without the tests across hosts.
test-processes: PACKAGES := $(TEST_PACKAGES)
test-processes: install
	$(VENV)/bin/pytest -n $(TEST_PROCESSES) -m "slow and not hosts and not compose"

# The tests across hosts (network namespaces, as root): partitions, clusters, failovers.
test-hosts: PACKAGES := $(TEST_PACKAGES)
test-hosts: install
	$(VENV)/bin/pytest -n $(TEST_PROCESSES) -m hosts

# The package's contract (guarantees/contract/contract.py): kombu's own Redis transport
# tests and Celery's own integration tests (canvas, tasks, inspect), from the installed
# releases' sdists, with kombu's transport and with the package's; a failure only the
# package's has fails it, unless listed with its reason. Then the upstream patches
# (guarantees/patches/), each checked against its release's sdist (contract/patches.py).
# Last, the package alone, as another project installs it: a venv of its own with the
# package and pytest (the locked version) only, its tests run from its folder, on a
# redis-server of their own: nothing of this project is there to lean on.
test-contract: PACKAGES := $(RUN_PACKAGES) openssl:openssl
test-contract: install
	$(VENV)/bin/python guarantees/contract/contract.py
	$(VENV)/bin/python guarantees/contract/patches.py
	rm -rf .run/package && $(PYTHON) -m venv .run/package
	.run/package/bin/pip install --quiet ./guarantees \
		pytest==$$($(VENV)/bin/python -c 'import pytest; print(pytest.__version__)')
	rm -rf guarantees/build  # what pip's build of the package left in the tree
	cd guarantees && ../.run/package/bin/python -m pytest -p no:cacheprovider

# docker-compose.yml for real: the image built, the stack up under Podman, every door tried
# through the proxy (storefront/tests/test_stack*.py). Apart from `make test`'s ten
# minutes; .ci/run runs it. Podman needs root here: without, the lane is skipped.
test-compose:
	@if [ "$$(id -u)" = 0 ]; then $(MAKE) --no-print-directory compose-lane; else \
	  echo "make test-compose: skipped, Podman runs the stack as root here: sudo make test-compose"; fi

compose-lane: PACKAGES := $(COMPOSE_PACKAGES)
compose-lane: install .tools/bin/podman-compose
	$(VENV)/bin/pytest -m compose

# Not tests: measurements against baselines run in the same script (bench/); a whole
# run writes docs/measured.md.
bench: install
	$(VENV)/bin/python -m bench

# celery and kombu to another minor version (TO=5.8; the newest on PyPI unless told),
# re-locked alone, then the package's contract lane says what broke (harness/upgrade_celery.py).
upgrade-celery: install
	$(VENV)/bin/python -m harness.upgrade_celery $(TO)

# The systems users have, each from a clean clone of HEAD (README, *Systems*).
# Debian 13 (trixie) built from Debian's archive (harness/debian13): as a developer without
# root (the printed apt line, the fast lane, a `make run` smoke), then as root (`make test`).
test-debian13: test-debian13-developer
	harness/debian13 root

test-debian13-developer:
	harness/debian13 developer

# This machine's own Debian Python (Debian 12: 3.11.2) first on PATH, where these machines
# put a newer one: a fresh install and the fast lane.
test-system-python:
	@clone=$$(mktemp -d) && trap 'rm -rf "$$clone"' EXIT && git clone --quiet . "$$clone" && \
	cd "$$clone" && PATH=/usr/bin:$$PATH $(MAKE) --no-print-directory test-fast PYTHON=/usr/bin/python3
