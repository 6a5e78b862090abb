"""The course's walk-through, with real processes: web, worker, beat and flower
against a real Redis."""

import pytest
import requests
from django.db import connections

from conftest import FLOWER_LOGIN, wait_until, wait_until_done
from harness.processes import POSTGRES_RABBITMQ


@pytest.mark.both_stacks
def test_hello_answers_while_workers_are_offline_and_a_later_worker_runs_the_message(
    web, start_worker, task_queue, database
):
    response = requests.get(web.url("/playground/hello/"), timeout=5)

    assert response.status_code == 200
    assert "Hello Mosh" in response.text
    assert task_queue.waiting() == 1

    worker = start_worker()
    wait_until_done(database)
    worker.wait_for("Emails were successfully sent!")  # the course's line, after the work
    log = worker.log()
    assert log.index("Sending 0 emails...") < log.index("]: Hello") < log.index("successfully")
    assert task_queue.waiting() == 0


@pytest.mark.both_stacks
def test_beat_sends_notify_customers_on_its_schedule(start_beat, project_env, task_queue):
    project_env["NOTIFY_CUSTOMERS_EVERY"] = "0.5"

    start_beat()

    # Taken as they come: each expires when the next is due (RabbitMQ drops it then).
    demo, taken = ("playground.tasks.notify_customers", ["Hello World"]), []
    wait_until(lambda: taken.extend(task_queue.take()) or taken.count(demo) >= 3, what="3 runs")


@pytest.mark.parametrize("stack", [POSTGRES_RABBITMQ], indirect=True)
def test_beat_goes_on_sending_after_the_database_drops_its_connection(
    start_beat, project_env, task_queue, database
):
    project_env["NOTIFY_CUSTOMERS_EVERY"] = "0.5"
    start_beat()
    demo, taken = ("playground.tasks.notify_customers", ["Hello World"]), []
    wait_until(lambda: taken.extend(task_queue.take()) or demo in taken, what="a first run")

    # What a PostgreSQL restart or failover does to a connection: the server ends it.
    with connections[database].cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        assert cursor.fetchall(), "Beat held no connection to the database"

    taken.clear()
    wait_until(lambda: taken.extend(task_queue.take()) or taken.count(demo) >= 3, what="3 runs")


@pytest.mark.both_stacks
def test_flower_answers_health_probes_and_shows_its_user_the_worker(flower, start_worker):
    start_worker("flowertest")

    health = requests.get(flower.url("/healthcheck"), timeout=5)
    anonymous = requests.get(flower.url("/api/workers"), timeout=5)
    workers = requests.get(flower.url("/api/workers?refresh=1"), auth=FLOWER_LOGIN, timeout=10)

    assert (health.status_code, health.text) == (200, "OK")
    assert anonymous.status_code == 401
    assert workers.status_code == 200
    assert any(name.startswith("flowertest@") for name in workers.json())
