"""Bad input never stops a worker. Bytes pushed onto a queue's list that are no message
(celery_guarantees/redis_transport.py) are set aside in `<queue>.malformed` with one log
line, while a real notification has batches in flight: the worker, its pool processes
and its batches go on, every customer gets one email, and a task sent afterwards runs.
On `celery` with a worker of both queues, and on `mail` with the mail worker."""

import json

import pytest
from django.conf import settings

from conftest import (
    call,
    deliveries,
    manage,
    pool_processes,
    sent_message,
    wait_until,
    wait_until_done,
)
from storefront.settings import environment


def without(message, *path):
    """A copy of `message` (a dict) without the key at `path`, as JSON bytes."""
    message = json.loads(json.dumps(message))
    *parents, key = path
    parent = message
    for name in parents:
        parent = parent[name]
    del parent[key]
    return json.dumps(message).encode()


BAD_BYTES = {
    "not JSON": lambda message: b"this is not json",
    "nothing at all": lambda message: b"",
    "truncated JSON": lambda message: json.dumps(message).encode()[:40],
    "a JSON array": lambda message: b"[]",
    "a JSON number": lambda message: b"42",
    "an empty object": lambda message: b"{}",
    "no headers": lambda message: without(message, "headers"),
    "no properties": lambda message: without(message, "properties"),
    # Readable by kombu, not by Celery, which took it for a lost connection, cancelled
    # the running batches and got it back again, forever.
    "headers without a task id": lambda message: without(message, "headers", "id"),
}
SPOILED = [
    *(pytest.param(spoil, "celery", id=name) for name, spoil in BAD_BYTES.items()),
    pytest.param(BAD_BYTES["not JSON"], "mail", id="not JSON, for the mail worker"),
]


def recipients(inbox):
    return sorted(message["To"] for message in inbox.messages)


def set_aside_lines(worker, queue):
    return [line for line in worker.log().splitlines() if f"{queue}.malformed" in line]


@pytest.fixture
def a_message(broker):
    """A real task message, as Redis holds it, to spoil; taken off the queue again."""
    return json.loads(sent_message(broker, "playground.tasks.relay_outbox"))


@pytest.fixture
def batches_in_flight(queue, project_env, seed_customers, smtp_server, start_worker, database):
    """A worker with four pool processes, three of them each sending one batch of a
    notification to 30 customers, held by the SMTP server; the fourth waits for a
    message from `queue`. A worker of both queues, or for the mail queue the mail worker
    (beside a worker of the other). Returns the worker."""
    project_env["NOTIFY_BATCH_SIZE"] = "10"
    seed_customers(30)
    smtp_server.hold_at = 4
    if queue == settings.MAIL_QUEUE:
        start_worker("worker", "--concurrency=1", "--queues=celery")
        worker = start_worker("mailer", "--concurrency=4", "--queues=mail")
    else:
        worker = start_worker("worker", "--concurrency=4")
    call(project_env, "Sent around bad bytes")
    smtp_server.wait_until_holding(connections=3)
    return worker


@pytest.mark.parametrize(("spoil", "queue"), SPOILED)
def test_bad_bytes_are_set_aside_and_the_worker_and_its_running_batches_go_on(
    spoil, queue, a_message, batches_in_flight, smtp_server, project_env, broker, database
):
    worker = batches_in_flight
    pool = pool_processes(worker)
    bad = spoil(a_message)

    broker.lpush(queue, bad)

    set_aside = lambda: broker.lrange(f"{queue}.malformed", 0, -1) == [bad]  # noqa: E731
    wait_until(set_aside, what="bytes set aside")
    assert broker.llen(f"{queue}.taking") == 0  # moved off it as they were set aside
    # Written once the bytes are safe in Redis.
    wait_until(lambda: set_aside_lines(worker, queue), what="the line that says so")
    assert worker.popen.poll() is None
    assert pool_processes(worker) == pool
    [line] = set_aside_lines(worker, queue)
    assert f"queue '{queue}'" in line
    assert f"({len(bad)} bytes: {bad[:60]!r})" in line

    smtp_server.release()
    wait_until_done(database)
    assert deliveries(database) == {"sent": 30}
    assert recipients(smtp_server) == sorted(f"customer{n}@example.com" for n in range(30))

    call(project_env, "Sent after the bad bytes")
    wait_until_done(database, count=2)
    assert deliveries(database) == {"sent": 60}
    # Nothing was cut off and run again, and the bytes were read once.
    log = worker.log()
    assert "Connection to broker lost" not in log
    assert "Restoring" not in log
    assert "Traceback" not in log
    assert len(set_aside_lines(worker, queue)) == 1
    assert broker.llen(f"{queue}.malformed") == 1


@pytest.mark.parametrize(
    ("url", "choice", "transport"),
    [
        ("redis://:secret@127.0.0.1:6379/1", None, "celery_guarantees.redis_transport:Transport"),
        ("rediss://127.0.0.1:6380/1", None, "celery_guarantees.redis_transport:Transport"),
        ("sentinel://s1:26379;sentinel://s2:26379", None,
         "celery_guarantees.redis_transport:SentinelTransport"),
        ("redis://127.0.0.1:6379/1", "kombu", None),
        ("amqp://guest:guest@127.0.0.1:5672//", None, None),
        ("memory://", None, None),
    ],
)  # fmt: skip
def test_redis_urls_get_the_packages_transport_unless_told_kombu_and_others_keep_kombus(
    url, choice, transport, monkeypatch
):
    if choice:
        monkeypatch.setenv("REDIS_TRANSPORT", choice)
    else:
        monkeypatch.delenv("REDIS_TRANSPORT", raising=False)

    assert environment.broker_transport("REDIS_TRANSPORT", url) == transport


def test_a_transport_that_is_neither_stops_a_process_at_start(project_env):
    project_env["REDIS_TRANSPORT"] = "stock"

    check = manage(project_env, "check", check=False)

    assert check.returncode == 1
    assert check.stderr == "storefront: REDIS_TRANSPORT must be guarantees or kombu, not 'stock'.\n"


def test_with_kombus_own_transport_bytes_that_are_no_json_stop_the_worker(
    project_env, start_worker, broker, database
):
    # What the package's transport is for: stock kombu's, the same bytes.
    project_env["REDIS_TRANSPORT"] = "kombu"
    worker = start_worker("worker", "--concurrency=1")

    broker.lpush("celery", b"this is not json")

    wait_until(lambda: worker.popen.poll() is not None, what="the worker stopped")
    assert "Unrecoverable error" in worker.log()
    assert broker.llen("celery") == broker.hlen("unacked") == 0  # and the bytes are gone
