"""The worker's task events, published in batches (celery_guarantees/task_events.py): every
one still reaches Flower and any other listener, in fewer messages, and none is left
behind when the worker stops."""

import base64
import json
from contextlib import contextmanager

import pytest
import requests

from conftest import FLOWER_LOGIN, manage, unacknowledged, wait_until
from storefront.settings.environment import BROKER_DB

TASK = "playground.tasks.purge_old_notifications"  # a short task with no arguments
TASKS = 30


def send_tasks(project_env, count=TASKS):
    """`count` tasks queued in one go, from a process configured as the web's."""
    send = f"for _ in range({count}): celery.send_task({TASK!r})"
    manage(project_env, "shell", "-c", f"from storefront.celery import celery\n{send}")


@contextmanager
def listening(client):
    """A reader of each task-event message published on this Redis from now on: the list
    of (event type, task id) each carries, in the order published."""
    listener = client.pubsub()
    listener.psubscribe("*celeryev/task.*")
    wait_until(lambda: listener.get_message(timeout=0.1) is not None, what="subscribed")
    messages = []

    def read():
        while message := listener.get_message(timeout=0.05):
            messages.append(task_events(message["data"]))
        return messages

    try:
        yield read
    finally:
        listener.close()


@pytest.fixture
def published(broker):
    """The task-event messages published on the Redis broker (`listening`)."""
    with listening(broker) as read:
        yield read


def task_events(data):
    body = json.loads(base64.b64decode(json.loads(data)["body"]))
    carried = body if isinstance(body, list) else [body]  # Celery's buffer sends lists
    return [(event["type"], event["uuid"]) for event in carried]


def events(messages):
    return [event for message in messages for event in message]


def every_task_ran(found, count=TASKS):
    succeeded = {uuid for kind, uuid in found if kind == "task-succeeded"}
    return len(succeeded) == count and all(
        {(kind, uuid) for kind in ("task-received", "task-started")} <= set(found)
        for uuid in succeeded
    )


@pytest.mark.both_stacks
def test_flower_shows_every_task_the_worker_ran(flower, start_worker, project_env, database):
    start_worker("eventful", "--concurrency=1")

    send_tasks(project_env)

    def succeeded():
        tasks = requests.get(flower.url("/api/tasks"), auth=FLOWER_LOGIN, timeout=5)
        return [task for task in tasks.json().values() if task["state"] == "SUCCESS"]

    wait_until(lambda: len(succeeded()) == TASKS, what=f"{TASKS} tasks succeeded in Flower")
    assert {task["name"] for task in succeeded()} == {TASK}


def test_the_worker_publishes_its_task_events_several_to_a_message(
    published, start_worker, project_env, database
):
    send_tasks(project_env)

    start_worker("eventful", "--concurrency=1")

    wait_until(lambda: every_task_ran(events(published())), what="every event")
    messages = published()
    assert sum(map(len, messages)) == 3 * TASKS  # received, started, succeeded: no more
    assert len(messages) <= TASKS  # Celery alone: one message per event, 3 per task here


def test_a_worker_told_to_stop_publishes_the_events_it_still_holds(
    published, start_worker, project_env, broker, database
):
    project_env["TASK_EVENTS_FLUSH_SECONDS"] = "3600"  # none would go out before the stop
    worker = start_worker("eventful", "--concurrency=1")

    send_tasks(project_env, count=1)
    wait_until(lambda: unacknowledged(broker) == 0, what="the task run and acknowledged")
    assert published() == []

    worker.stop()
    assert worker.popen.returncode == 0
    wait_until(lambda: every_task_ran(events(published()), count=1))


def test_the_worker_publishes_its_task_events_again_once_it_has_reconnected(
    own_redis, start_worker, project_env, database
):
    start_worker("eventful", "--concurrency=1")

    own_redis.kill()
    own_redis.start()

    with listening(own_redis.client(BROKER_DB)) as published:
        send_tasks(project_env)
        wait_until(lambda: every_task_ran(events(published())), what="every event")
