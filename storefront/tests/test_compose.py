"""docker-compose.yml cannot run here (no Docker engine): check it is in step
with the Procfile and the project's Redis policy instead."""

import shlex
from pathlib import Path

import pytest
import yaml
from django.conf import settings

from conftest import procfile_command
from storefront.localredis import REDIS_FLAGS

BASE_DIR = Path(__file__).resolve().parent.parent.parent
SERVICE_OF_PROCESS = {"worker": "celery", "beat": "celery-beat", "flower": "flower"}


@pytest.fixture(scope="module")
def services():
    return yaml.safe_load((BASE_DIR / "docker-compose.yml").read_text())["services"]


@pytest.mark.parametrize(("process", "service"), sorted(SERVICE_OF_PROCESS.items()))
def test_compose_runs_each_celery_process_as_the_procfile_does(services, process, service):
    assert shlex.split(services[service]["command"]) == procfile_command(process)


def test_compose_web_migrates_then_serves_on_port_8000(services):
    command = services["web"]["command"]
    assert command.index("migrate") < command.index("0.0.0.0:8000")
    assert "8000:8000" in services["web"]["ports"]


def test_compose_redis_keeps_the_project_redis_policy(services):
    command = services["redis"]["command"]
    assert all(flag in command for flag in REDIS_FLAGS)


def test_compose_has_exactly_one_beat(services):
    beats = [s for s in services.values() if " beat" in str(s.get("command", ""))]
    assert len(beats) == 1
    assert "replicas" not in beats[0].get("deploy", {})


def test_compose_lets_a_deploy_wait_for_the_longest_task(services):
    grace = services["celery"]["stop_grace_period"]
    assert float(grace.removesuffix("s")) > settings.CELERY_TASK_TIME_LIMIT
