"""docker-compose.yml cannot run here (no Docker engine): check it against the
Compose specification's schema, and in step with the Procfile, the settings and
the project's Redis policy. prod_web in conftest runs its web command for real."""

import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml
from django.conf import settings

from conftest import BASE_DIR, compose_command, procfile_command
from harness.localredis import REDIS_FLAGS

SERVICE_OF_PROCESS = {"worker": "celery", "beat": "celery-beat", "flower": "flower"}
# The web serves with gunicorn in compose, and smtp4dev catches the mail there.
SERVICE_OF_EVERY_PROCESS = {**SERVICE_OF_PROCESS, "web": "web", "mail": "smtp4dev"}


@pytest.fixture(scope="module")
def services():
    return yaml.safe_load((BASE_DIR / "docker-compose.yml").read_text())["services"]


@pytest.mark.slow  # runs check-jsonschema
def test_compose_file_follows_the_compose_specification():
    check = subprocess.run(
        [Path(BASE_DIR, ".venv/bin/check-jsonschema"), "--builtin-schema", "vendor.compose-spec",
         BASE_DIR / "docker-compose.yml"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr


def test_every_procfile_process_has_its_compose_service(services):
    processes = [
        line.partition(":")[0] for line in (BASE_DIR / "Procfile").read_text().splitlines()
    ]
    assert sorted(processes) == sorted(SERVICE_OF_EVERY_PROCESS)
    assert set(SERVICE_OF_EVERY_PROCESS.values()) <= set(services)


@pytest.mark.parametrize(("process", "service"), sorted(SERVICE_OF_PROCESS.items()))
def test_compose_runs_each_celery_process_as_the_procfile_does(process, service):
    assert shlex.split(compose_command(service)) == procfile_command(process)


def test_compose_web_migrates_then_serves_the_project_with_gunicorn(services):
    command = compose_command("web")
    assert command.index("manage.py migrate") < command.index("gunicorn storefront.wsgi")
    assert services["web"]["environment"]["DJANGO_SETTINGS_MODULE"] == "storefront.settings.prod"


def test_every_service_has_a_health_check_and_waits_for_healthy_dependencies(services):
    for name, service in services.items():
        assert "test" in service["healthcheck"], name
        for dependency, condition in service.get("depends_on", {}).items():
            assert condition == {"condition": "service_healthy"}, (name, dependency)


def test_compose_redis_keeps_the_project_redis_policy_behind_a_password(services):
    command = services["redis"]["command"]
    assert all(flag in command for flag in REDIS_FLAGS)
    assert "--requirepass" in command
    assert "ports" not in services["redis"]
    assert "redisdata:/data" in services["redis"]["volumes"]


def test_compose_publishes_flower_and_smtp4dev_on_the_hosts_loopback_only(services):
    assert services["flower"]["ports"] == ["127.0.0.1:5555:5555"]
    assert all(port.startswith("127.0.0.1:") for port in services["smtp4dev"]["ports"])
    assert "ports" not in services["db"]


def test_compose_file_and_image_hold_no_secrets():
    compose = (BASE_DIR / "docker-compose.yml").read_text()
    keys = r"^\s*\w*(?:PASSWORD|SECRET_KEY|BASIC_AUTH)\w*: *(\S+)"
    passwords_in_urls = r"://[^\s:@/]*:([^\s@]+)@"
    for pattern in (keys, passwords_in_urls):
        for match in re.finditer(pattern, compose, re.MULTILINE):
            assert match.group(1).startswith("${"), match.group(0)
    assert ".env" in (BASE_DIR / ".dockerignore").read_text().split()


def test_production_image_installs_no_development_packages():
    dockerfile = (BASE_DIR / "Dockerfile").read_text()
    assert "pipenv install --system --deploy\n" in dockerfile


def test_compose_has_exactly_one_beat(services):
    beats = [s for s in services.values() if " beat" in str(s.get("command", ""))]
    assert len(beats) == 1
    assert "replicas" not in beats[0].get("deploy", {})


def test_compose_lets_a_deploy_wait_for_the_longest_task(services):
    grace = services["celery"]["stop_grace_period"]
    assert float(grace.removesuffix("s")) > settings.CELERY_TASK_TIME_LIMIT


def test_the_image_leaves_out_the_harness_the_benchmarks_and_the_tests():
    ignored = (BASE_DIR / ".dockerignore").read_text().split()
    assert {"harness", "bench", "conftest.py", "**/tests", "db.sqlite3*"} <= set(ignored)


def test_nothing_deployed_imports_the_harness():
    deployed = [
        path
        for package in ("storefront", "playground")
        for path in (BASE_DIR / package).rglob("*.py")
        if "tests" not in path.parts
    ]
    assert deployed
    for path in [*deployed, BASE_DIR / "flowerconfig.py", BASE_DIR / "gunicorn.conf.py"]:
        assert not re.search(r"^\s*(from|import) harness\b", path.read_text(), re.M), path
