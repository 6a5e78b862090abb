"""Poison messages stop (playground/poison.py, on celery_guarantees.delivery_counting): a
message whose task kills its worker process on every delivery is given up after
CELERY_TASK_MAX_DELIVERIES (recorded, logged with its task id, in the admin, replayable)
instead of coming back forever.

The fast tests drive Celery's own worker code in this process (the strategy that builds
a request from the task's Request class, and the hand-off to the pool) over a pool that
only records what it is given; they fail loudly if a new Celery stops going through
what poison.py counts. The slow test kills a real worker's pool process on every
delivery."""

import logging
import os
import re
import signal
from collections import Counter

import pytest
import redis
import requests
from celery import uuid
from celery.utils.imports import symbol_by_name
from celery_guarantees import delivery_counting
from celery_guarantees.testing.worker import KILLED, Worker, kill, requeued
from django.conf import settings
from django.core.cache import cache

from conftest import (
    call,
    manage,
    pool_processes,
    queued_tasks,
    unacked_tasks,
    wait_until,
    wait_until_done,
)
from playground import poison, tasks
from playground.models import Delivery, PoisonMessage
from storefront.celery import celery
from storefront.settings.environment import CACHE_DB

SEND_BATCH = "playground.tasks.send_batch"


@pytest.fixture
def worker(settings):
    settings.TASK_MAX_DELIVERIES = 3
    cache.clear()
    return Worker(celery, tasks.send_batch)


def test_every_task_is_delivered_through_the_counting_request():
    assert set(celery.tasks) > {SEND_BATCH, "playground.tasks.notify_customers"}
    for name, task in celery.tasks.items():
        assert symbol_by_name(task.Request) is poison.DeliveryCountingRequest, name


@pytest.mark.django_db
def test_celery_still_hands_messages_to_the_pool_where_poison_counts_them(worker):
    # poison.py relies on these, all of Celery's worker internals: if one fails after
    # an upgrade, messages are no longer counted, and a poison message loops forever.
    task_id = uuid()
    request, _, reject = worker.deliver(task_id, redelivered=False)
    assert isinstance(request, poison.DeliveryCountingRequest), (
        "the worker's strategy no longer builds requests from the task's Request class"
    )
    assert worker.handed_to_pool() == 1, "Request.execute_using_pool no longer hands it over"
    kill(request)
    assert requeued(reject), "a killed pool process no longer gives the message back"
    for _ in range(2):
        kill(worker.deliver(task_id)[0])

    _, _, reject = worker.deliver(task_id)

    assert worker.handed_to_pool() == 3, (
        "the worker's hand-off (WorkController._process_task) no longer goes through"
        " Request.execute_using_pool, where poison.py counts deliveries"
    )
    assert worker.freed == 1, "TaskRevokedError from the hand-off no longer frees the slot"
    assert [call.args[2] for call in reject.call_args_list] == [False]


def test_a_first_delivery_costs_no_cache_call(worker, monkeypatch):
    monkeypatch.setattr(poison.DeliveryCountingRequest, "counts", None)  # any use would fail

    request, ack, _ = worker.deliver(uuid(), redelivered=False)
    request.on_success((False, None, 0.01))

    assert worker.handed_to_pool() == 1
    assert ack.call_count == 1


@pytest.mark.django_db
def test_a_message_that_kills_its_worker_process_runs_n_times_then_is_given_up(worker, caplog):
    task_id = uuid()
    args = ["a-notification", [1, 2, 3]]
    kill(worker.deliver(task_id, args, redelivered=False)[0])
    kill(worker.deliver(task_id, args)[0])
    kill(worker.deliver(task_id, args)[0])
    caplog.clear()

    _, ack, reject = worker.deliver(task_id, args)

    assert worker.handed_to_pool() == 3
    assert reject.call_args.args[2] is False  # rejected without requeue: gone from Redis
    assert ack.call_count == 0
    record = PoisonMessage.objects.get()
    assert (record.task, record.task_id, record.args, record.kwargs, record.deliveries) == (
        SEND_BATCH,
        task_id,
        args,
        {},
        3,
    )
    assert record.last_error == f"WorkerLostError: {KILLED}"
    assert record.worker == "tester@localhost"
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.name for r in warnings] == ["celery_guarantees.delivery_counting"]
    assert f"{SEND_BATCH}[{task_id}]" in warnings[0].getMessage()
    assert celery.AsyncResult(task_id).state == "FAILURE"  # its chord and errbacks learn it
    assert cache.get(delivery_counting.count_key(task_id, 0)) is None


@pytest.mark.django_db
def test_a_message_that_finishes_forgets_its_deliveries(worker):
    task_id = uuid()
    kill(worker.deliver(task_id, redelivered=False)[0])
    kill(worker.deliver(task_id)[0])
    request, ack, _ = worker.deliver(task_id)
    assert cache.get(delivery_counting.count_key(task_id, 0)) == 3

    request.on_success((False, None, 0.01))

    assert ack.call_count == 1
    assert cache.get(delivery_counting.count_key(task_id, 0)) is None
    assert cache.get(f"{delivery_counting.count_key(task_id, 0)}:error") is None
    # Sent again under the same id (the outbox, a replay), it has every delivery again.
    kill(worker.deliver(task_id, redelivered=False)[0])
    for _ in range(2):
        kill(worker.deliver(task_id)[0])
    assert worker.handed_to_pool() == 6
    assert not PoisonMessage.objects.exists()


@pytest.mark.django_db
def test_each_retry_of_a_task_counts_its_own_deliveries(worker):
    task_id = uuid()
    kill(worker.deliver(task_id, redelivered=False)[0])
    for _ in range(2):
        kill(worker.deliver(task_id)[0])

    worker.deliver(task_id, retries=1)

    assert worker.handed_to_pool() == 4


def test_a_cache_that_is_away_runs_the_message_as_before(worker, settings):
    # Nothing listens on port 1: every cache call fails at once.
    away = {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://127.0.0.1:1/2",
    }
    settings.CACHES = {**settings.CACHES, "default": away}

    for _ in range(5):
        kill(worker.deliver(uuid())[0])

    assert worker.handed_to_pool() == 5


# --- Replay, in this process, against the throwaway Redis ----------------------------


def given_up(task_id=None, args=("a-notification", [1, 2])):
    return PoisonMessage.objects.create(
        task_id=task_id or uuid(), task=SEND_BATCH, args=list(args), deliveries=5
    )


def queued_ids(client):
    """The task ids of the batches waiting on the mail queue."""
    return [
        re.search(rb'"id": "([^"]+)"', raw).group(1).decode()
        for raw in client.lrange(settings.MAIL_QUEUE, 0, -1)
    ]


@pytest.mark.django_db
def test_replay_sends_it_once_under_its_own_task_id_and_removes_it(broker):
    record = given_up()

    assert poison.replay(record) is True
    assert poison.replay(record) is False  # replayed already: sent once

    assert queued_tasks(broker, settings.MAIL_QUEUE) == [(SEND_BATCH, ["a-notification", [1, 2]])]
    assert queued_ids(broker) == [record.task_id]
    assert not PoisonMessage.objects.exists()


@pytest.mark.django_db
def test_the_admin_lists_them_and_replays_the_selected(admin_client, broker):
    record, other = given_up(), given_up(args=("another", [3]))
    changelist = "/admin/playground/poisonmessage/"

    page = admin_client.get(changelist).content.decode()
    assert record.task_id in page
    assert other.task_id in page

    action = {"action": "replay", "_selected_action": [record.pk], "index": 0}
    response = admin_client.post(changelist, action, follow=True)

    assert "Sent again: 1 message(s)." in response.content.decode()
    assert queued_ids(broker) == [record.task_id]
    assert list(PoisonMessage.objects.values_list("task_id", flat=True)) == [other.task_id]


# --- The real thing: a worker whose pool process is killed on every delivery ---------


class Admin:
    """A signed-in admin user in a browser, over plain HTTP (development settings)."""

    def __init__(self, web, username, password):
        self.web, self.session = web, requests.Session()
        self.session.headers["Referer"] = web.url("/admin/")
        form = {"username": username, "password": password, "next": "/admin/"}
        response = self.post("/admin/login/", form)
        assert response.status_code == 302, response.text

    def token(self, path):
        page = self.session.get(self.web.url(path), timeout=10).text
        return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)

    def get(self, path):
        return self.session.get(self.web.url(path), timeout=10)

    def post(self, path, form):
        form = {**form, "csrfmiddlewaretoken": self.token(path)}
        return self.session.post(self.web.url(path), data=form, allow_redirects=False, timeout=10)


def poison_messages(database):
    fields = ("id", "task", "task_id", "args", "deliveries", "last_error")
    return list(PoisonMessage.objects.using(database).values_list(*fields))


def sent_to(database, notification_id):
    sent = Delivery.objects.using(database).filter(status="sent")
    return sent.filter(notification_id=notification_id).count()


def send_batches_in(client):
    waiting = queued_tasks(client, settings.MAIL_QUEUE)
    return [t for t in waiting + unacked_tasks(client) if t[0] == SEND_BATCH]


def test_a_batch_that_kills_its_worker_process_on_every_delivery_is_given_up_and_replayed(
    project_env, seed_customers, smtp_server, start_worker, start_web, broker, redis_server,
    database,
):  # fmt: skip
    project_env.update(NOTIFY_BATCH_SIZE="10", CELERY_TASK_MAX_DELIVERIES="3")
    seed_customers(10)
    # The batch takes 4 emails, then every run waits on the 5th: killed there each time.
    smtp_server.hold_at = 4
    worker = start_worker("worker", "--concurrency=1")
    call(project_env, "Poisoned")

    for delivery in (1, 2, 3):
        smtp_server.wait_until_holding(delivery)
        for pid in pool_processes(worker):
            os.kill(pid, signal.SIGKILL)

    # The 4th delivery is given up: recorded, and gone from Redis, never run.
    wait_until(lambda: poison_messages(database), what="a poison message recorded")
    wait_until(lambda: send_batches_in(broker) == [], what="the batch gone from Redis")
    [(pk, task, task_id, args, deliveries, last_error)] = poison_messages(database)
    assert (task, deliveries) == (SEND_BATCH, 3)
    assert "WorkerLostError: Worker exited prematurely: signal 9 (SIGKILL)" in last_error
    notification_id = args[0]
    assert smtp_server.held == 3  # no 4th run reached the SMTP server
    # The log line is itself what is promised: one warning naming the task id.
    given_up = f"WARNING celery_guarantees.delivery_counting: Gave up on {SEND_BATCH}[{task_id}]"
    assert worker.log().count(given_up) == 1
    # Failed like a batch that failed for good: its notification finishes with what it reached.
    wait_until_done(database)
    assert sent_to(database, notification_id) == 4
    # Its count is forgotten with it.
    assert redis.Redis.from_url(redis_server.url(CACHE_DB)).keys("*poison*") == []

    # The worker serves the next task.
    smtp_server.release()
    call(project_env, "After the poison")
    wait_until_done(database, count=2)
    assert worker.popen.poll() is None

    # The operator sees it in the admin and replays it: it runs once, to the 6 customers
    # it had not reached, and nobody gets two emails.
    password = "an-admin-password-for-the-test"
    manage({**project_env, "DJANGO_SUPERUSER_PASSWORD": password}, "createsuperuser",
           "--noinput", "--username=admin", "--email=admin@example.com")  # fmt: skip
    admin = Admin(start_web(), "admin", password)
    changelist = "/admin/playground/poisonmessage/"
    page = admin.get(changelist).text
    assert task_id in page
    assert SEND_BATCH in page

    response = admin.post(changelist, {"action": "replay", "_selected_action": pk, "index": 0})

    assert response.status_code == 302
    wait_until(lambda: sent_to(database, notification_id) == 10, what="the replayed batch sent")
    assert poison_messages(database) == []
    wait_until(lambda: send_batches_in(broker) == [], what="the replayed batch acknowledged")
    # The worker's log is the only report of a run (a second run would send nothing).
    assert worker.log().count(f"{SEND_BATCH}[{task_id}] succeeded") == 1
    per_customer = Counter(m["Message-ID"] for m in smtp_server.messages)
    assert len(per_customer) == 20
    assert set(per_customer.values()) == {1}


def test_without_the_count_a_batch_that_kills_its_worker_process_comes_back_forever(
    project_env, seed_customers, smtp_server, start_worker, database
):
    # Celery's own request (the package's count off): the same poison runs past where
    # the count would give it up, and nothing records it.
    project_env.update(NOTIFY_BATCH_SIZE="10", CELERY_TASK_MAX_DELIVERIES="0")
    seed_customers(10)
    smtp_server.hold_at = 4
    worker = start_worker("worker", "--concurrency=1")
    call(project_env, "Poisoned, uncounted")

    for delivery in (1, 2, 3, 4):
        smtp_server.wait_until_holding(delivery)
        for pid in pool_processes(worker):
            os.kill(pid, signal.SIGKILL)

    smtp_server.wait_until_holding(5)  # a 5th run, where the count gives up the 4th
    assert poison_messages(database) == []
    assert "Gave up on" not in worker.log()
