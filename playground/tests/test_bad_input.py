"""Bad input never stops a worker. Bytes pushed onto the `celery` list that are no
message (storefront/transport.py) are set aside in `celery.malformed` with one log line,
while a real notification has batches in flight: the worker, its pool processes and its
batches go on, every customer gets one email, and a task sent afterwards runs.

The fast tests pin what the transport rests on in kombu, so that a kombu upgrade that
changes it fails here rather than in production."""

import hashlib
import inspect
import json

import pytest
from kombu import Connection
from kombu.transport import redis as kombu_redis
from kombu.transport.virtual import base as kombu_virtual

from conftest import (
    call,
    deliveries,
    pool_processes,
    sent_message,
    wait_until,
    wait_until_done,
)
from storefront import transport


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


def recipients(inbox):
    return sorted(message["To"] for message in inbox.messages)


def set_aside_lines(worker):
    return [line for line in worker.log().splitlines() if "celery.malformed" in line]


@pytest.fixture
def a_message(broker):
    """A real task message, as Redis holds it, to spoil; taken off the queue again."""
    return json.loads(sent_message(broker, "playground.tasks.relay_outbox"))


@pytest.fixture
def batches_in_flight(project_env, seed_customers, smtp_server, start_worker, database):
    """A worker with four pool processes, three of them each sending one batch of a
    notification to 30 customers, held by the SMTP server; the fourth waits for a
    message. Returns the worker."""
    project_env["NOTIFY_BATCH_SIZE"] = "10"
    seed_customers(30)
    smtp_server.hold_at = 4
    worker = start_worker("worker", "--concurrency=4")
    call(project_env, "Sent around bad bytes")
    smtp_server.wait_until_holding(connections=3)
    return worker


@pytest.mark.parametrize("spoil", BAD_BYTES.values(), ids=BAD_BYTES.keys())
def test_bad_bytes_are_set_aside_and_the_worker_and_its_running_batches_go_on(
    spoil, a_message, batches_in_flight, smtp_server, project_env, broker, database
):
    worker = batches_in_flight
    pool = pool_processes(worker)
    bad = spoil(a_message)

    broker.lpush("celery", bad)

    wait_until(lambda: broker.lrange("celery.malformed", 0, -1) == [bad], what="bytes set aside")
    assert broker.llen("celery.taking") == 0  # moved off it as they were set aside
    # Written once the bytes are safe in Redis.
    wait_until(lambda: set_aside_lines(worker), what="the line that says so")
    assert worker.popen.poll() is None
    assert pool_processes(worker) == pool
    [line] = set_aside_lines(worker)
    assert "queue 'celery'" in line
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
    assert len(set_aside_lines(worker)) == 1
    assert broker.llen("celery.malformed") == 1


# kombu's methods that storefront/transport.py copies and changes (kombu 5.7.0). When this
# fails, kombu changed one: bring the copy in step with kombu's, then update the digest.
COPIED_FROM_KOMBU = {
    kombu_redis.Channel._brpop_read: (
        "c42518699709f2df90f55a048fe6346612ae5527e5c4a6819f2c0920dc62088f",
        "(self, **options)",
    ),
    kombu_redis.Channel._brpop_start: (
        "06723d707ddf224025af70ff511e07a27e1e8a37ec509e7dfa11ee408a79ccec",
        "(self, timeout=None)",
    ),
    kombu_redis.QoS.append: (
        "35c655f6ecc62fe6e9902f7498dde9b47ff27187973d7568e02529c400027416",
        "(self, message, delivery_tag)",
    ),
    kombu_redis.QoS.ack: (
        "1bc15a4ddf541af6aede3b76093919f847899f93dd8c1a2537ab7eaff1227207",
        "(self, delivery_tag)",
    ),
}


@pytest.mark.parametrize("method", COPIED_FROM_KOMBU, ids=lambda method: method.__qualname__)
def test_kombu_still_does_what_storefront_transport_copies(method):
    digest, signature = COPIED_FROM_KOMBU[method]
    source = inspect.getsource(method)

    assert hashlib.sha256(source.encode()).hexdigest() == digest, source
    assert str(inspect.signature(method)) == signature


def test_kombu_offers_what_storefront_transport_calls():
    # What the copy and the set-aside call on kombu, with the arguments they pass.
    assert callable(kombu_redis.Channel._flush_brpop_reauth)
    assert list(inspect.signature(kombu_virtual.Transport._deliver).parameters) == [
        "self", "message", "queue",
    ]  # fmt: skip
    assert "requeue" in inspect.signature(kombu_redis.QoS.reject).parameters
    assert list(inspect.signature(kombu_redis.QoS._remove_from_indices).parameters) == [
        "self", "delivery_tag", "pipe",
    ]  # fmt: skip
    assert list(inspect.signature(kombu_virtual.QoS.get).parameters) == ["self", "delivery_tag"]
    # The poller reads a BRPOP reply through the channel's handler, the overridden method.
    handlers = inspect.getsource(kombu_redis.Channel.__init__)
    assert "self.handlers = {'BRPOP': self._brpop_read" in handlers
    # The workers' periodic restore, which also puts back what a dead worker had taken.
    restore = inspect.getsource(kombu_redis.MultiChannelPoller.maybe_restore_messages)
    assert "channel.qos.restore_visible(" in restore


def test_redis_urls_get_the_transport_that_sets_bad_bytes_aside_and_others_keep_theirs():
    redis = Connection("redis://:secret@127.0.0.1:6379/1")
    rediss = Connection("rediss://127.0.0.1:6380/1")

    assert redis.transport_cls == "redis"  # so that logs and Flower still read redis://
    assert redis.as_uri() == "redis://:**@127.0.0.1:6379/1"
    assert type(redis.transport) is transport.Transport
    assert type(rediss.transport) is transport.Transport
    assert rediss.ssl  # kombu's own TLS for rediss:// still applies
    assert type(Connection("memory://").transport) is not transport.Transport
    assert type(Connection("amqp://localhost//").transport) is not transport.Transport
