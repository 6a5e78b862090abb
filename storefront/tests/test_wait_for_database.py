"""`manage.py wait_for_database`, which compose's web runs before its migrations: a
database that comes up later is waited for; one that never does stops it with one
sentence."""

import subprocess
import sys

import pytest
from celery_guarantees.testing.servers import free_port

from conftest import manage
from harness.localpostgres import LocalPostgres
from harness.processes import BASE_DIR


@pytest.mark.slow
def test_a_database_that_comes_up_later_is_waited_for(project_env):
    server = LocalPostgres(free_port())
    env = {**project_env, "DATABASE_URL": server.url("postgres")}
    waiting = subprocess.Popen(
        [sys.executable, "manage.py", "wait_for_database"],
        cwd=BASE_DIR, env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        said = iter(waiting.stderr.readline, "")
        assert "Waiting for the database to take connections...\n" in said  # not yet there
        server.start()
        assert waiting.wait(timeout=30) == 0
        assert "Traceback" not in waiting.stderr.read()
    finally:
        waiting.kill()
        server.remove()


def test_a_database_that_never_comes_up_stops_the_command_with_one_sentence(project_env):
    env = {**project_env, "DATABASE_URL": f"postgres://storefront@127.0.0.1:{free_port()}/shop"}

    waited = manage(env, "wait_for_database", "--timeout", "1", check=False)

    assert waited.returncode == 1
    assert waited.stderr.splitlines()[-1].startswith(
        "CommandError: the database did not take connections within 1 s: connection failed:"
    )
    assert waited.stderr.splitlines()[-1].endswith("Connection refused")
    assert "Traceback" not in waited.stderr
