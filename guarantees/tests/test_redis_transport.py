"""The Redis transport (celery_guarantees/redis_transport.py) takes each message with an
atomic move onto `celery.taking` and records it as unacknowledged as it takes it off, so
that no moment exists where the message is only in a worker's memory; and it sends every
command through one redis-py client instead of building one per command. Here through
kombu, in this process, on the tests' throwaway Redis; the project's test_faults.py
kills a real worker there."""

import json
import ssl
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress

import pytest
import redis
from celery_guarantees.redis_transport import Transport
from celery_guarantees.testing.waiting import wait_until
from kombu import Connection, Queue
from kombu.transport import redis as kombu_redis

from .conftest import DB

# kombu's poller runs the restore at every poll that finds nothing (throttle 1).
OPTIONS = {"priority_steps": [0], "visibility_timeout": 1, "unacked_restore_throttle": 1}
STEPS = [0, 3, 6, 9]  # kombu's own


def consumer_channel(
    redis_server, received, no_ack=False, prefix="", queues=("celery",), tls=False, **options
):
    """A kombu connection and its channel, consuming `queues` into `received`; with
    `prefix` as kombu's global_keyprefix, if any, over TLS (rediss://) if `tls`, and
    kombu's transport `options`."""
    options = {**OPTIONS, "global_keyprefix": prefix, **options}
    url, verified = redis_server.url(DB), False
    if tls:  # verifying the server's certificate
        url = redis_server.tls_url(DB)
        verified = {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": redis_server.certificate}
    connection = Connection(url, transport=Transport, transport_options=options, ssl=verified)
    channel = connection.default_channel
    for queue in queues:
        channel.basic_consume(queue, no_ack, received.append, queue)
    return connection, channel


@pytest.mark.parametrize("no_ack", [False, True], ids=["acknowledged", "no acknowledgement"])
def test_a_message_leaves_the_taking_list_as_its_consumer_takes_it(
    no_ack, a_message, broker, redis_server
):
    received = []
    connection, _channel = consumer_channel(redis_server, received, no_ack)
    with connection:
        connection.drain_events(timeout=5)

        [message] = received
        assert broker.llen("celery") == broker.llen("celery.taking") == 0
        unacked = [] if no_ack else [message.delivery_tag.encode()]
        assert broker.hkeys("unacked") == unacked


@pytest.mark.parametrize("tls", [False, True], ids=["redis", "rediss"])
@pytest.mark.parametrize("prefix", ["", "shop:"], ids=["no prefix", "global_keyprefix"])
@pytest.mark.parametrize("queues", [["celery"], ["celery", "mail"]], ids=["one list", "several"])
def test_a_message_taken_by_a_consumer_that_died_before_reading_it_goes_back_to_its_queue(
    queues, prefix, tls, broker, redis_server, new_message
):
    a_message = new_message()
    broker.flushdb()  # (what sending it declared, unprefixed)
    broker.lpush(f"{prefix}celery", a_message)
    dead, channel = consumer_channel(redis_server, [], prefix=prefix, queues=queues, tls=tls)
    # Its poller's first steps: a connection of its own, the take sent: of one list, the
    # wait for a message (BLMOVE); of several, as after a bell, the script. Redis takes
    # the message at once; the reply is never read.
    channel.client.connection = channel.client.connection_pool.get_connection()
    channel.backlog = len(queues) > 1
    channel._brpop_start()
    taking = f"{prefix}celery.taking"
    if len(queues) == 1:  # moved, not recorded
        wait_until(lambda: broker.lrange(taking, 0, -1) == [a_message], what="it taken")
    else:  # recorded as unacknowledged as it was taken
        wait_until(lambda: broker.hlen(f"{prefix}unacked") == 1, what="it taken")
    channel.client.connection.disconnect()  # died: nothing more done, nothing given back
    assert broker.llen(f"{prefix}celery") == 0

    received = []
    survivor, _channel = consumer_channel(
        redis_server, received, prefix=prefix, queues=queues, tls=tls
    )
    with survivor:
        # kombu's periodic restore, as the survivor's poller finds nothing: the taking
        # list's once the message has stayed there past the visibility timeout (seen
        # first, then put back), or the unacknowledged record's; the survivor takes it.
        wait_until(lambda: drained(survivor) or received, timeout=10, what="it taken again")
        [message] = received
        assert message.delivery_tag == tag_of(json.loads(a_message))
        assert broker.hkeys(f"{prefix}unacked") == [message.delivery_tag.encode()]
    assert broker.llen(taking) == broker.hlen(f"{taking}.seen") == 0
    assert all(key.startswith(prefix.encode()) for key in broker.scan_iter())
    dead.release()


def test_a_purge_empties_and_counts_what_a_dead_consumer_left_taking(
    a_message, broker, redis_server, new_message
):
    broker.lmove("celery", "celery.taking", "RIGHT", "LEFT")  # as a dead worker leaves it
    broker.hset("celery.taking.seen", a_message, 1)
    broker.lpush("celery", new_message())  # waiting
    connection, channel = consumer_channel(redis_server, [])
    with connection:
        assert channel.queue_purge("celery") == 2
    assert broker.keys("celery*") == []


@pytest.mark.parametrize("prefix", ["", "shop:"], ids=["no prefix", "global_keyprefix"])
def test_a_consumer_draining_a_backlog_takes_and_records_each_message_in_one_command(
    prefix, broker, redis_server, new_message
):
    raws = [new_message() for _ in range(3)]
    broker.lpush(f"{prefix}celery", *raws)  # the first pushed is the first taken
    broker.config_resetstat()
    received = []
    connection, _channel = consumer_channel(redis_server, received, prefix=prefix)
    with connection:
        for _ in raws:
            connection.drain_events(timeout=5)
        calls = {name: stats["calls"] for name, stats in broker.info("commandstats").items()}
        records = broker.hgetall(f"{prefix}unacked")
        unacked = {tag.decode(): json.loads(record) for tag, record in records.items()}
        assert broker.llen(f"{prefix}celery") == broker.llen(f"{prefix}celery.taking") == 0
        assert all(key.startswith(prefix.encode()) for key in broker.scan_iter())

    payloads = [json.loads(raw) for raw in raws]
    assert [message.delivery_tag for message in received] == [tag_of(each) for each in payloads]
    assert calls["cmdstat_eval"] == 2  # the first waited for (BLMOVE), the others by script
    # Recorded as kombu records them: the message, the exchange and routing key it came by.
    kombu_records = {tag_of(each): [each, "", "celery"] for each in payloads}
    assert unacked == kombu_records


def test_bytes_no_worker_can_read_in_a_backlog_are_set_aside_and_the_messages_around_taken(
    broker, redis_server, new_message
):
    good = [new_message() for _ in range(2)]
    came_by = {"exchange": "", "routing_key": "celery"}
    bad = [
        b"not json",
        json.dumps({"properties": {}}).encode(),  # no tag: not recorded by the script
        # Recorded by the script (a tag, where it came from), then found without headers.
        json.dumps({"properties": {"delivery_tag": "t", "delivery_info": came_by}}).encode(),
    ]
    broker.lpush("celery", good[0], bad[0], good[1], bad[1], bad[2])
    broker.config_resetstat()
    received = []
    connection, _channel = consumer_channel(redis_server, received)
    with connection:
        for _ in range(5):
            connection.drain_events(timeout=5)
        calls = broker.info("commandstats")["cmdstat_eval"]["calls"]
        unacked = broker.hkeys("unacked")
        assert broker.llen("celery") == broker.llen("celery.taking") == 0

    assert calls == 4  # all but the first taken by script

    assert [message.delivery_tag for message in received] == [
        tag_of(json.loads(raw)) for raw in good
    ]
    assert broker.lrange("celery.malformed", 0, -1) == bad[::-1]  # newest first
    assert sorted(unacked) == sorted(message.delivery_tag.encode() for message in received)


def test_a_consumer_of_several_queues_takes_from_each_and_records_each_as_it_takes_it(
    broker, redis_server, new_message
):
    raws = {queue: message_for(new_message, queue) for queue in ("celery", "mail")}
    for queue, raw in raws.items():
        broker.lpush(queue, raw)  # no bell rung: found when the consumer's wait ends
    broker.config_resetstat()
    received = []
    connection, _channel = consumer_channel(
        redis_server, received, queues=["celery", "mail"], visibility_timeout=60
    )
    with connection:
        for _ in raws:
            took_one(connection, received)
        calls = {name: stats["calls"] for name, stats in broker.info("commandstats").items()}
        unacked = broker.hkeys("unacked")
        assert broker.llen("celery") == broker.llen("mail") == 0

    assert sorted(message.delivery_info["routing_key"] for message in received) == list(raws)
    assert sorted(unacked) == sorted(message.delivery_tag.encode() for message in received)
    assert "cmdstat_brpop" not in calls


def test_a_consumer_of_several_queues_waiting_is_woken_by_a_publish_to_any(broker, redis_server):
    # Its wait lasts 60 s: without the bell the publish rings, it would not take the
    # message within the 10 s it is given.
    received = []
    connection, channel = consumer_channel(redis_server, received, queues=["celery", "mail"])
    channel.brpop_timeout = 60
    with connection, Connection(redis_server.url(DB), transport=Transport) as publisher:
        waiting = ThreadPoolExecutor(1).submit(connection.drain_events, timeout=10)
        wait_until(lambda: broker.info("clients")["blocked_clients"] == 1, what="it waiting")
        to = publisher.default_channel
        to.basic_publish(to.prepare_message("hello"), "", "mail")
        waiting.result()
    [message] = received
    assert message.delivery_info["routing_key"] == "mail"


def test_a_consumer_of_several_priority_steps_takes_the_first_step_first(broker, redis_server):
    # kombu's Redis priorities: 0 first; each step a list of its own (celery\x06\x163).
    options = {"priority_steps": STEPS}
    with Connection(redis_server.url(DB), transport=Transport, transport_options=options) as to:
        for priority in (9, 3, 0):
            message = to.default_channel.prepare_message(str(priority), priority=priority)
            to.default_channel.basic_publish(message, "", "celery")
    received = []
    connection, _channel = consumer_channel(redis_server, received, priority_steps=STEPS)
    with connection:
        for _ in range(3):
            took_one(connection, received)
            assert broker.exists("celery.bell") == (len(received) < 3)  # rung for the rest
    assert [message.body for message in received] == [b"0", b"3", b"9"]


def message_for(new_message, queue):
    """The bytes of a real task message as Redis holds it on `queue`."""
    raw = json.loads(new_message())
    raw["properties"]["delivery_info"]["routing_key"] = queue
    return json.dumps(raw).encode()


def took_one(connection, received):
    """Let `connection` poll until its consumer has received one more message."""
    before = len(received)
    wait_until(lambda: drained(connection) or len(received) > before, what="a message")


def drained(connection):
    """Let `connection` poll once (a restore runs when it finds nothing)."""
    with suppress(TimeoutError):
        connection.drain_events(timeout=0.2)


def tag_of(payload):
    return payload["properties"]["delivery_tag"]


def redis_clients_built_by(transport, redis_server, monkeypatch):
    """How many redis-py clients a kombu connection on `transport` builds to publish
    20 messages and to take and acknowledge them."""
    built = []
    build = redis.Redis.__init__

    def counted(client, *args, **kwargs):
        built.append(client)
        build(client, *args, **kwargs)

    monkeypatch.setattr(redis.Redis, "__init__", counted)
    url = redis_server.url(DB)
    with Connection(url, transport=transport, transport_options=OPTIONS) as connection:
        queue = Queue("clients", routing_key="clients")
        producer = connection.Producer()
        for n in range(20):
            producer.publish({"n": n}, routing_key="clients", declare=[queue])
        with connection.Consumer(queue, callbacks=[lambda body, message: message.ack()]):
            for _ in range(20):
                connection.drain_events(timeout=5)
    return len(built)


def test_publishes_and_acknowledgements_reuse_one_redis_client(broker, redis_server, monkeypatch):
    assert redis_clients_built_by(Transport, redis_server, monkeypatch) <= 3


def test_kombu_still_builds_a_redis_client_per_command(broker, redis_server, monkeypatch):
    # When this fails, kombu reuses its client: Channel.conn_or_acquire in
    # redis_transport.py can go (docs/kombu-redis-client-per-command.md).
    assert redis_clients_built_by(kombu_redis.Transport, redis_server, monkeypatch) >= 40
