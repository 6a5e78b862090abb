"""Flower's doors (flowerconfig.py, storefront/flower.py), with Flower started as the
Procfile starts it."""

import pytest
import requests
from flower.urls import handlers
from tornado.web import RequestHandler

from conftest import FLOWER_LOGIN, procfile_command, queued_tasks, sent_message

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


# Every route of Flower's API that acts on the cluster: a POST.
CONTROLS = [
    pattern.replace("(.+)", "playground.tasks.notify_customers").replace("(.*)", "x")
    for pattern, handler, *_ in (route for route in handlers if isinstance(route, tuple))
    if pattern.startswith("/api/") and handler.post is not RequestHandler.post
]


def test_flowers_api_only_reads_by_default_and_says_so_in_the_log(flower, broker):
    send = flower.url("/api/task/send-task/playground.tasks.notify_customers")
    anonymous = requests.post(send, json={"args": ["Hello"]}, timeout=5)
    answers = {
        path: requests.post(
            flower.url(path), json={"args": ["Hello"]}, auth=FLOWER_LOGIN, timeout=5
        )
        for path in CONTROLS
    }

    assert anonymous.status_code == 401
    assert {path: answer.status_code for path, answer in answers.items()} == dict.fromkeys(
        CONTROLS, 403
    )
    assert len(CONTROLS) >= 14  # sending and running tasks, revoke, the pool, shutdown...
    assert flower.log().count("Refused control call") == len(CONTROLS)
    assert queued_tasks(broker) == []  # no mailing was sent


def test_an_operator_who_turns_controls_on_can_send_a_task_and_it_is_logged(
    project_env, start_flower, broker
):
    project_env["FLOWER_ALLOW_CONTROL"] = "true"
    flower = start_flower()
    task = "playground.tasks.purge_old_notifications"

    sent = requests.post(
        flower.url(f"/api/task/send-task/{task}"), json={}, auth=FLOWER_LOGIN, timeout=5
    )

    assert sent.status_code == 200
    assert queued_tasks(broker) == [(task, [])]
    assert f"Control call /api/task/send-task/{task} from 127.0.0.1" in flower.log()


def test_wrong_passwords_from_one_address_are_refused_unchecked_from_the_fifth_on(flower):
    workers = flower.url("/api/workers")

    guesses = [requests.get(workers, auth=("tester", f"guess-{n}"), timeout=5) for n in range(5)]
    right = requests.get(workers, auth=FLOWER_LOGIN, timeout=5)

    assert [guess.status_code for guess in guesses] == [401] * 5
    assert right.status_code == 429  # until the first guess is a minute old
    assert "too many failed logins" in flower.log()


@pytest.mark.parametrize("prefix", ["", "shop:"], ids=["no prefix", "global_keyprefix"])
def test_flower_counts_the_messages_waiting_in_each_queue(
    prefix, project_env, start_flower, broker
):
    # What an operator (or an autoscaler) reads to size the workers: with every key
    # prefixed (CELERY_BROKER_KEY_PREFIX), the queues' lists are the prefixed ones.
    project_env["CELERY_BROKER_KEY_PREFIX"] = prefix
    flower = start_flower()
    for queue, waiting in (("celery", 2), ("mail", 1)):
        for _ in range(waiting):
            broker.lpush(f"{prefix}{queue}", sent_message(broker, "playground.tasks.relay_outbox"))

    lengths = requests.get(flower.url("/api/queues/length"), auth=FLOWER_LOGIN, timeout=5)

    assert {queue["name"]: queue["messages"] for queue in lengths.json()["active_queues"]} == {
        "celery": 2,
        "mail": 1,
    }
