"""A dead consumer's messages go back to their queues within seconds, a live one's never
(celery_guarantees/liveness.py). Consumers here are kombu connections in this process
on the tests' throwaway Redis; one "dies" as a frozen or killed process does to it: its
renewals stop, its channel is not closed. The project's test_faults.py kills and
freezes real workers."""

import json
import time

import pytest
from celery_guarantees.liveness import Liveness
from celery_guarantees.redis_transport import TakenForDead
from celery_guarantees.testing.servers import RedisServer, free_port
from celery_guarantees.testing.waiting import wait_until

from .test_redis_transport import consumer_channel, drained, tag_of, took_one

# kombu's visibility timeout far away: what comes back here came back by the liveness.
WINDOW = {"liveness_window": 1, "visibility_timeout": 3600}


def silent_holder(redis_server, held, queues=("celery",)):
    """A consumer that took a message into `held` and went silent, as a SIGSTOP or
    SIGKILL of its process leaves it: its renewals stopped, its channel not closed."""
    connection, channel = consumer_channel(redis_server, held, queues=queues, **WINDOW)
    took_one(connection, held)
    channel.liveness.stop()
    return connection, channel


@pytest.mark.parametrize("queues", [["celery"], ["celery", "mail"]], ids=["one list", "several"])
def test_a_silent_consumers_message_goes_back_to_its_queue_and_to_a_live_consumer(
    queues, a_message, broker, redis_server
):
    held, survived = [], []
    dead, _channel = silent_holder(redis_server, held, queues)
    taken_at = time.monotonic()

    survivor, other = consumer_channel(redis_server, survived, queues=queues, **WINDOW)
    with survivor:
        took_one(survivor, survived)
        took_within = time.monotonic() - taken_at

        [message] = survived
        assert message.delivery_tag == held[0].delivery_tag == tag_of(json.loads(a_message))
        assert message.delivery_info["redelivered"]  # as kombu's restore marks it
        assert broker.hgetall("unacked_owner") == {
            message.delivery_tag.encode(): other.liveness.name.encode()
        }
        assert broker.zrange("unacked_consumers", 0, -1) == [other.liveness.name.encode()]
    # The window (1 s) and a renewal (a fifth of it), and the survivor's first poll.
    assert took_within < 3
    dead.release()


def test_a_live_consumers_message_stays_its_own_past_the_visibility_timeout(
    a_message, broker, redis_server
):
    held, nothing = [], []
    options = {"liveness_window": 1, "visibility_timeout": 1}
    holder, channel = consumer_channel(redis_server, held, **options)
    took_one(holder, held)
    tag = held[0].delivery_tag
    taken_at = broker.zscore("unacked_index", tag)
    other, _channel = consumer_channel(redis_server, nothing, **options)
    with holder, other:
        # kombu's restore runs at each of the other's empty polls (throttle 1), three
        # visibility timeouts long, while the holder's renewals move the message's time.
        wait_until(
            lambda: drained(other) or broker.zscore("unacked_index", tag) > taken_at + 3,
            what="three visibility timeouts",
        )
        assert nothing == []
        assert broker.hget("unacked_owner", tag) == channel.liveness.name.encode()
        assert broker.llen("celery") == 0


def test_a_consumer_taken_for_dead_takes_nothing_more_and_its_late_ack_forgets_nothing(
    a_message, broker, redis_server, new_message
):
    held, survived = [], []
    frozen, channel = silent_holder(redis_server, held)
    survivor, other = consumer_channel(redis_server, survived, **WINDOW)
    with survivor:
        took_one(survivor, survived)

        # Resumed: its renewal is refused, its ack finds the message another's, and its
        # next poll fails as a lost connection does (Celery reconnects).
        channel.liveness.renew(channel)
        assert channel.liveness.lost
        held[0].ack()
        tag = survived[0].delivery_tag
        assert broker.hget("unacked_owner", tag) == other.liveness.name.encode()
        assert broker.hexists("unacked", tag)
        broker.lpush("celery", new_message())
        with pytest.raises(TakenForDead):
            frozen.drain_events(timeout=5)
        assert broker.llen("celery") == 1  # its take refused, the message put back
    frozen.release()


@pytest.mark.slow  # a redis-server of its own
def test_a_consumer_that_cannot_reach_redis_for_a_moment_says_so_once_and_again_when_back(
    tmp_path, caplog, monkeypatch
):
    # Its own Redis, stopped and started again within the liveness window (5 s: a
    # renewal a second), so that the name is still alive when it comes back.
    server = RedisServer(free_port(), tmp_path).start()
    attempts = []
    renew = Liveness.renew
    monkeypatch.setattr(Liveness, "renew", lambda *args: attempts.append(1) or renew(*args))
    connection, channel = consumer_channel(server, [], liveness_window=5)
    with connection, caplog.at_level("WARNING", logger="celery_guarantees.liveness"):
        wait_until(lambda: attempts, what="a renewal")
        server.stop()
        failed_from = len(attempts)
        wait_until(lambda: len(attempts) >= failed_from + 2, what="two renewals while away")
        server.start()
        wait_until(lambda: "renewed in Redis again" in caplog.text, what="the renewal back")

        said = [record.getMessage() for record in caplog.records]
        assert len([line for line in said if "Could not renew" in line]) == 1
        assert not channel.liveness.lost
    server.stop()


def test_a_silent_consumers_message_wakes_a_live_consumer_of_several_lists_at_once(
    a_message, broker, redis_server
):
    # The live one waits on its queues' bells for 60 s: the giving back rings the bell of
    # the message's queue, or it would not take it within the 10 s it is given.
    held, survived = [], []
    dead, _channel = silent_holder(redis_server, held, ["celery", "mail"])
    survivor, other = consumer_channel(redis_server, survived, queues=["celery", "mail"], **WINDOW)
    other.brpop_timeout = 60
    with survivor:
        survivor.drain_events(timeout=10)

        [message] = survived
        assert message.delivery_tag == held[0].delivery_tag
        assert not broker.exists("celery.bell")  # taken with the message
    dead.release()
