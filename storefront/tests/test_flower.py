"""Flower's doors (flowerconfig.py, storefront/flower.py), with Flower started as the
Procfile starts it."""

import pytest
import requests

from conftest import procfile_command

WEAK = ["admin:admin", "ops:s3cret", "ops:password1234", "ops"]


@pytest.mark.parametrize("credentials", WEAK)
def test_production_flower_refuses_weak_credentials_in_one_sentence(prod_env, start, credentials):
    prod_env["FLOWER_BASIC_AUTH"] = credentials

    flower = start("flower", procfile_command("flower"))

    assert flower.popen.wait(timeout=60) != 0
    refusal = [line for line in flower.log().splitlines() if "FLOWER_BASIC_AUTH" in line]
    assert len(refusal) == 1
    assert refusal[0].startswith("flower: FLOWER_BASIC_AUTH is too weak")
    assert "Traceback" not in flower.log()


def test_a_failed_login_is_logged_with_the_clients_address(flower):
    requests.get(flower.url("/api/workers"), timeout=5)  # no credentials: not a failure
    requests.get(flower.url("/api/workers"), auth=("tester", "guess"), timeout=5)

    flower.wait_for("Failed login from 127.0.0.1 for /api/workers")  # the line is the point
    assert flower.log().count("Failed login") == 1
    assert "guess" not in flower.log()


def test_metrics_are_open_like_the_health_check_and_name_no_task_arguments(flower):
    """Flower serves /metrics without credentials by design (Prometheus scrapes it);
    it is reachable only where Flower listens: 127.0.0.1, or the compose network."""
    metrics = requests.get(flower.url("/metrics"), timeout=5)

    assert metrics.status_code == 200
    assert "flower_" in metrics.text
    assert requests.get(flower.url("/api/tasks"), timeout=5).status_code == 401
