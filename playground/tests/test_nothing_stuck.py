"""Nothing stays stuck: a notification whose message never reached the broker, or whose
work the broker lost, still ends, and the next one starts on its own. Real processes,
real faults: the web killed between its commit and its publish, Redis restarted without
its data in the middle of a notification."""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections import Counter
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import requests
from django.conf import settings

from conftest import (
    POSTGRES_RABBITMQ,
    call,
    deliveries,
    queued_tasks,
    wait_until,
    wait_until_done,
)
from harness.processes import BASE_DIR
from playground.models import Notification, OutboxMessage

EVERY_CUSTOMER = sorted(f"customer{n}@example.com" for n in range(30))


class SilentBroker:
    """A port that takes connections and never answers, counting the connections: a
    client connected here is in the middle of a publish."""

    def __init__(self):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.connections = []
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                self.connections.append(self.server.accept()[0])
            except OSError:  # closed
                return

    def close(self):
        self.server.close()
        for connection in self.connections:
            connection.close()


@pytest.fixture
def silent_broker():
    broker = SilentBroker()
    yield broker
    broker.close()


def emails_per_customer(inbox):
    """How many emails each customer got of each notification (by Message-ID)."""
    return Counter(message["Message-ID"] for message in inbox.messages)


def outbox_rows(database):
    return OutboxMessage.objects.using(database).count()


@pytest.mark.both_stacks
def test_a_web_killed_between_its_commit_and_its_publish_leaves_the_work_to_the_relay(
    project_env, seed_customers, smtp_server, start, start_web, start_worker, start_beat,
    database, silent_broker,
):  # fmt: skip
    # Beat relays every 0.5 s; its course demo (every 5 s in development) would start
    # a third notification of its own (a run saw 5 of its emails counted here).
    project_env.update(
        NOTIFY_BATCH_SIZE="10", OUTBOX_RELAY_EVERY="0.5", NOTIFY_CUSTOMERS_EVERY="3600"
    )
    seed_customers(30)
    broker_url = project_env["CELERY_BROKER_URL"]
    # The same broker's scheme and path, at a port that never answers.
    silent = urlsplit(broker_url)._replace(netloc=f"127.0.0.1:{silent_broker.port}")
    project_env["CELERY_BROKER_URL"] = urlunsplit(silent)
    web = start_web()

    def visit_and_lose_the_answer():
        with contextlib.suppress(requests.ConnectionError):  # the web dies under it
            requests.get(web.url("/playground/hello/"), timeout=10)

    visit = threading.Thread(target=visit_and_lose_the_answer, daemon=True)

    visit.start()
    # Committed (the notification and its message), and now publishing: kill it here.
    wait_until(lambda: outbox_rows(database) == 1 and silent_broker.connections, what="publish")
    os.killpg(web.popen.pid, signal.SIGKILL)
    visit.join()

    project_env["CELERY_BROKER_URL"] = broker_url
    start_worker("worker", "--concurrency=2")
    start_beat()
    wait_until_done(database)
    assert sorted(message["To"] for message in smtp_server.messages) == EVERY_CUSTOMER
    assert outbox_rows(database) == 0

    # The next notification starts on its own, from a page that works again.
    page = start_web()
    requests.get(page.url("/playground/hello/"), timeout=10)
    wait_until_done(database, count=2)
    assert sorted(emails_per_customer(smtp_server).values()) == [1] * 60


def test_a_notification_whose_work_redis_lost_is_finished_and_the_next_one_runs(
    own_redis, project_env, seed_customers, smtp_server, start_worker, start_beat, database
):
    project_env.update(
        NOTIFY_BATCH_SIZE="10", NOTIFY_STALE_AFTER="2", NOTIFY_REAP_EVERY="0.5",
        NOTIFY_CUSTOMERS_EVERY="3600",
    )  # fmt: skip
    seed_customers(30)
    smtp_server.hold_at = 4  # the first batch is in flight, the other two wait in Redis
    worker = start_worker("worker", "--concurrency=1")
    call(project_env, "Lost")
    smtp_server.wait_until_holding()

    # A deploy stops the worker (the running batch finishes), then Redis restarts
    # without its data: the two waiting batches and the chord's counter are gone.
    worker.popen.send_signal(signal.SIGTERM)
    smtp_server.release()
    worker.popen.wait(timeout=60)
    waiting = queued_tasks(own_redis.client(1), settings.MAIL_QUEUE)
    assert [name for name, _ in waiting] == ["playground.tasks.send_batch"] * 2
    own_redis.stop()
    shutil.rmtree(own_redis.data_dir)
    own_redis.start()

    start_worker("second", "--concurrency=2")
    start_beat()
    wait_until_done(database)
    [reason] = Notification.objects.using(database).values_list("reason", flat=True)
    assert reason.startswith("No progress for")
    assert deliveries(database) == {"sent": 10}

    call(project_env, "Next")  # the way is free: the next one runs, to everyone
    wait_until_done(database, count=2)
    assert sorted(emails_per_customer(smtp_server).values()) == [1] * 40


@pytest.mark.both_stacks
def test_relays_running_at_once_publish_each_kept_message_once(project_env, database, task_queue):
    kept = [
        OutboxMessage(task_id=uuid.uuid4(), task="playground.tasks.relay_outbox")
        for _ in range(100)
    ]
    OutboxMessage.objects.using(database).bulk_create(kept)
    relay = "from playground import outbox; outbox.relay()"
    argv = [sys.executable, "manage.py", "shell", "-c", relay]

    relays = [subprocess.Popen(argv, cwd=BASE_DIR, env=project_env) for _ in range(3)]

    assert [relay.wait(timeout=60) for relay in relays] == [0, 0, 0]
    assert OutboxMessage.objects.using(database).count() == 0
    published = task_queue.take()
    assert len(published) == 100
    assert {name for name, _ in published} == {"playground.tasks.relay_outbox"}


@pytest.mark.parametrize("stack", [POSTGRES_RABBITMQ], indirect=True)
def test_a_relay_skips_a_kept_message_another_relay_holds_instead_of_waiting(
    project_env, database, task_queue
):
    kept = OutboxMessage.objects.using(database).create(
        task_id=uuid.uuid4(), task="playground.tasks.relay_outbox"
    )
    relay = "from playground import outbox; print(outbox.relay())"
    argv = [sys.executable, "manage.py", "shell", "-c", relay]

    # Another relay's transaction holds the row while this one runs.
    with psycopg.connect(project_env["DATABASE_URL"]) as other:
        other.execute("SELECT 1 FROM playground_outboxmessage WHERE id = %s FOR UPDATE", [kept.pk])
        done = subprocess.run(argv, cwd=BASE_DIR, env=project_env, capture_output=True, timeout=30)

    assert done.returncode == 0, done.stderr
    assert task_queue.waiting() == 0  # left to the relay that holds it
    assert OutboxMessage.objects.using(database).count() == 1
