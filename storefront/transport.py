"""The broker's transport: kombu's Redis transport, except that bytes a worker cannot read
never stop it.

kombu's Redis channel pops each message (BRPOP) and decodes it in the worker's event
loop. Bytes that are not a message (not JSON, a JSON value of another shape, an envelope
without its properties or headers) raise there, and the worker either exits
("Unrecoverable error") or, the error being a KeyError, takes it for a lost connection:
it cancels its running tasks and reconnects, and a message the consumer had taken comes
back to fail again. Here such bytes are set aside, exactly as they were popped, in the
Redis list `<queue>.malformed` (`celery.malformed`), logged in one line (queue, size,
first bytes, what is wrong), and the worker goes on with the next message.

An operator reads them, newest first, with `redis-cli -n 1 LRANGE celery.malformed 0 -1`.
To replay the oldest once what could not read it is fixed: `redis-cli -n 1 LMOVE
celery.malformed celery RIGHT LEFT`; to replay a repaired copy: `redis-cli -n 1 --raw
LINDEX celery.malformed -1 > message.json`, edit it, `redis-cli -n 1 -x LPUSH celery <
message.json`, then `redis-cli -n 1 RPOP celery.malformed`. Nothing trims the list: each
entry was logged as an error, and `DEL celery.malformed` empties it.

The settings register this class under the URL schemes redis and rediss (and its
Sentinel form under sentinel), so
CELERY_BROKER_URL alone still decides which transport runs. (kombu takes a class by path
from the `transport` argument, Celery's broker_transport, but that one would win over
every URL: the tests' memory:// and a RabbitMQ amqp:// too.)"""

import logging
from queue import Empty
from typing import Any

from kombu.transport import redis
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads

logger = logging.getLogger(__name__)

# Where the bytes popped from queue Q go when no worker can read them: Q + this.
MALFORMED_SUFFIX = ".malformed"

JSON_NAMES = {dict: "object", list: "array", str: "string", int: "number", float: "number"}


def shape_problem(payload: object) -> str | None:
    """What keeps a decoded JSON value from being a message as kombu writes one to Redis
    (and as its Redis channel reads it), or None."""
    if not isinstance(payload, dict):
        name = JSON_NAMES.get(type(payload), "true, false or null")
        return f"a JSON {name}, not an object"
    properties = payload.get("properties")
    if not isinstance(properties, dict):
        return "no properties object"
    # A tag of another type fails in redis-py as if Redis had refused it.
    if not isinstance(properties.get("delivery_tag"), str):
        return "no delivery tag"
    # Where it came from, which Redis keeps with it while unacknowledged.
    info = properties.get("delivery_info")
    if not isinstance(info, dict) or not {"exchange", "routing_key"} <= info.keys():
        return "no delivery info"
    if not isinstance(payload.get("headers"), dict):
        return "no headers object"
    return None


class Channel(redis.Channel):
    def _brpop_read(self, **options: Any) -> bool:
        # kombu 5.7's own, but for the popped bytes going through _deliver_or_set_aside
        # instead of straight to the consumer. test_bad_input.py fails once kombu's
        # changes, so that this copy follows it. (kombu's type stubs leave out the private
        # parts it uses.)
        try:
            try:
                reply = self.client.parse_response(self.client.connection, "BRPOP", **options)
            except self.connection.connection_errors:
                # Dropped, so that the next poll reconnects.
                self.client.connection.disconnect()
                raise
            if not reply:
                raise Empty()
            key, raw = reply
            queue = bytes_to_str(key).rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(queue)  # type: ignore[attr-defined]
            self._deliver_or_set_aside(queue, raw)
            return True
        finally:
            self._in_poll = None
            # The connection is idle here: kombu's moment to renew its credentials.
            self._flush_brpop_reauth()  # type: ignore[attr-defined]

    def _deliver_or_set_aside(self, queue: str, raw: bytes) -> None:
        try:
            payload = loads(bytes_to_str(raw))
        except ValueError as error:
            self._set_aside(queue, raw, f"not JSON ({error})")
            return
        if problem := shape_problem(payload):
            self._set_aside(queue, raw, problem)
            return
        try:
            self.connection._deliver(payload, queue)
        except Exception as error:
            if self._broker_failed(error):
                raise
            # The worker could not take it in (headers without a task id, a body that
            # does not decode...): it would fail the same way at every delivery.
            tag = payload["properties"]["delivery_tag"]
            self._set_aside(queue, raw, f"the worker cannot take it ({error!r})", tag)

    def _broker_failed(self, error: Exception) -> bool:
        # kombu counts KeyError among connection errors, for the socket of a dropped
        # connection still being polled (kombu#2582); raised while one message is handed
        # to the worker, it is that message's.
        broker_errors = self.connection.connection_errors + self.connection.channel_errors
        return isinstance(error, broker_errors) and not isinstance(error, KeyError)

    def _set_aside(self, queue: str, raw: bytes, problem: str, tag: str | None = None) -> None:
        malformed = queue + MALFORMED_SUFFIX
        with self.conn_or_acquire() as client:
            client.lpush(malformed, raw)
        if tag is not None and self._holds(tag):
            # Taken before it failed: unacknowledged, Redis would give it back after the
            # visibility timeout (and at the worker's stop) for it to fail again.
            self.qos.reject(tag, requeue=False)
        logger.error(
            "Set aside a message of queue %r that no worker can read (%d bytes: %r): %s."
            " It is in the Redis list %r.",
            queue, len(raw), raw[:60], problem, malformed,
        )  # fmt: skip

    def _holds(self, tag: str) -> bool:
        try:
            self.qos.get(tag)
        except KeyError:
            return False
        return True


class Transport(redis.Transport):
    Channel = Channel


class SentinelChannel(Channel, redis.SentinelChannel):
    """The same, on a Redis reached through Sentinel (sentinel:// URLs)."""


class SentinelTransport(redis.SentinelTransport):
    Channel = SentinelChannel
