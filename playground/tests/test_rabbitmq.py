"""Switching the broker to RabbitMQ is configuration only (CELERY_BROKER_URL=amqp://…),
and what RabbitMQ does better than Redis is used and shown here, on a throwaway
RabbitMQ node (conftest.py): quorum queues, countdowns kept in the broker, a message
given back the moment its worker's connection drops, a delivery limit with a
dead-letter queue."""

import os
import signal

import pytest
import requests
from celery_guarantees.testing.servers import free_port

from conftest import (
    FLOWER_LOGIN,
    POSTGRES_RABBITMQ,
    TaskQueue,
    call,
    deliveries,
    manage,
    pool_processes,
    wait_until,
    wait_until_done,
)
from playground.models import Notification, PoisonMessage
from storefront.rabbitmq import DEAD_LETTER_QUEUE
from storefront.settings.environment import CACHE_DB

rabbitmq_only = pytest.mark.parametrize("stack", [POSTGRES_RABBITMQ], indirect=True)


def vhost_of(project_env):
    return project_env["CELERY_BROKER_URL"].rsplit("/", 1)[1]


@rabbitmq_only
def test_each_task_queue_is_a_quorum_queue_with_a_delivery_limit(
    project_env, start_worker, rabbitmq_server
):
    start_worker()

    for name in ("celery", "mail"):
        queue = rabbitmq_server.queue(vhost_of(project_env), name)
        assert queue["type"] == "quorum"
        assert queue["arguments"]["x-delivery-limit"] == 5
        assert queue["arguments"]["x-dead-letter-routing-key"] == DEAD_LETTER_QUEUE
    assert rabbitmq_server.queue(vhost_of(project_env), DEAD_LETTER_QUEUE)["type"] == "quorum"


@pytest.mark.both_stacks
def test_a_waiting_countdown_never_holds_up_other_work(
    project_env, seed_customers, smtp_server, start_worker, database
):
    seed_customers(3)
    start_worker("worker", "--concurrency=1")

    call(project_env, "Later", countdown=6)
    call(project_env, "Now")

    # "Now" is done while "Later" still waits for its countdown ...
    wait_until_done(database, count=1, timeout=30)
    notifications = Notification.objects.using(database)
    assert list(notifications.values_list("message", flat=True)) == ["Now"]
    # ... which still runs, when it is due.
    wait_until_done(database, count=2, timeout=60)
    assert [m["Subject"] for m in smtp_server.messages].count("Later") == 3


@rabbitmq_only
def test_a_batch_whose_whole_worker_is_killed_goes_back_at_once_to_another_worker(
    thirty_customers, project_env, start_worker, database
):
    # The Redis lane's visibility timeout (300 s) is left as it is: RabbitMQ gives a
    # message back when the connection of the worker holding it drops.
    first = start_worker("first", "--concurrency=1")
    call(project_env, "Worker killed mid-batch")
    thirty_customers.wait_until_holding()
    start_worker("second", "--concurrency=1")

    first.kill()
    thirty_customers.release()

    wait_until_done(database, timeout=60)
    received = [message["To"] for message in thirty_customers.messages]
    assert len(received) == len(set(received)) == 30
    assert deliveries(database) == {"sent": 30}


@rabbitmq_only
def test_past_the_delivery_limit_a_batch_lands_in_the_dead_letter_queue_when_the_cache_is_away(
    project_env, seed_customers, smtp_server, start_worker, redis_server, database
):
    # The worker's own count (playground/poison.py) lives in the cache: with the cache
    # away, the queue's delivery limit is what stops the message. Results stay reachable.
    project_env.update(
        NOTIFY_BATCH_SIZE="10",
        CELERY_TASK_MAX_DELIVERIES="2",
        CELERY_RESULT_BACKEND=redis_server.url(CACHE_DB),
        REDIS_CACHE_URL=f"redis://127.0.0.1:{free_port()}/{CACHE_DB}",  # nothing listens
    )
    seed_customers(10)
    smtp_server.hold_at = 4  # every run waits on the 5th email: killed there each time
    worker = start_worker("worker", "--concurrency=1")
    call(project_env, "Poisoned")
    dead = TaskQueue(project_env, DEAD_LETTER_QUEUE)

    def delivered_again_or_dead(kills):
        return lambda: dead.waiting() or smtp_server.held > kills

    for kills in range(10):  # noqa: B007 (kept: how many it took)
        wait_until(delivered_again_or_dead(kills), what="the next delivery")
        if dead.waiting():
            break
        for pid in pool_processes(worker):
            os.kill(pid, signal.SIGKILL)

    # Delivered 3 times (the limit, 2, plus the first), then dead-lettered, unchanged.
    assert kills == 3
    assert worker.popen.poll() is None

    # The operator moves it to the admin's poison messages, to inspect and replay there.
    kept = manage(project_env, "keep_dead_letters")
    assert kept.stdout.startswith("Kept 1 dead-lettered message(s) as poison messages; ")
    [poison] = PoisonMessage.objects.using(database)
    assert (poison.task, len(poison.args[1])) == ("playground.tasks.send_batch", 10)
    assert poison.last_error == "Dead-lettered by RabbitMQ (delivery_limit)"
    assert dead.waiting() == 0
    assert manage(project_env, "keep_dead_letters").stdout.startswith("Kept 0 ")


@rabbitmq_only
def test_a_message_that_expired_in_the_queue_is_dropped_not_kept_as_poison(
    project_env, start_worker, database
):
    start_worker().stop()  # the queues are declared; nobody takes the message in time
    call(project_env, "Too late", expires=1)
    dead = TaskQueue(project_env, DEAD_LETTER_QUEUE)
    wait_until(lambda: dead.waiting() == 1, what="RabbitMQ dead-letters it as it expires")

    kept = manage(project_env, "keep_dead_letters").stdout

    assert (
        kept == "Kept 0 dead-lettered message(s) as poison messages; dropped 1 that had expired.\n"
    )
    assert dead.waiting() == 0
    assert not PoisonMessage.objects.using(database).exists()


@rabbitmq_only
def test_flower_shows_the_workers_of_a_rabbitmq_broker(project_env, flower, start_worker):
    start_worker("flowertest")

    workers = requests.get(
        flower.url("/api/workers"), auth=FLOWER_LOGIN, params={"refresh": 1}, timeout=10
    )
    assert workers.ok
    assert any(name.startswith("flowertest@") for name in workers.json())


@pytest.mark.parametrize("variable", ["CELERY_RESULT_BACKEND", "REDIS_CACHE_URL"])
def test_a_result_backend_or_cache_that_is_not_redis_stops_a_process_at_start(
    project_env, variable
):
    project_env[variable] = "amqp://guest:secret@127.0.0.1:5672//"

    check = manage(project_env, "check", check=False)

    assert check.returncode == 1
    assert check.stderr == (
        f"storefront: {variable} must be a Redis URL (redis://, rediss:// or sentinel://),"
        " not amqp://…: results, the cache and Beat's lock live in Redis, whatever the"
        " broker.\n"
    )


@rabbitmq_only
def test_celery_still_refuses_a_delay_under_a_second_on_rabbitmq_which_whole_seconds_avoids(
    project_env,
):
    """Fails once Celery's native delayed delivery takes a delay under a second: then
    outbox.whole_seconds() can go (docs/upstream/celery-subsecond-countdown.md)."""
    send = "celery.send_task('playground.tasks.relay_outbox', countdown=0.2)"

    refused = manage(project_env, "shell", "-c", f"from storefront.celery import celery\n{send}",
                     check=False)  # fmt: skip

    assert refused.returncode == 1
    assert refused.stderr.endswith("ValueError: countdown must be a positive number\n")
