"""kombu's Redis transport, except that no message is ever only in a worker's memory
and bytes a worker cannot read never stop it. Named by Celery's `broker_transport`
(`celery_guarantees.redis_transport:Transport`; `:SentinelTransport` for sentinel://).

A message is never only in a worker's memory. kombu pops with BRPOP and records the
message as unacknowledged (the `unacked` hash, whence Redis gives it back after the
visibility timeout) only once it has read the reply: a worker killed in between lost the
message with it (1 in 12 random kills of a whole worker, measured before this). Here a
worker that takes from one list (one queue, one priority step) takes with BLMOVE, which
moves the message, in Redis and at once, onto the list `<queue>.taking`
(`celery.taking`); recording it as unacknowledged removes it from there in the same
atomic step (one script). What a dead worker leaves on `celery.taking` is put back on its
queue by the workers' periodic restore (kombu's, every `unacked_restore_interval`) once it
has been there longer than the visibility timeout, as kombu does for `unacked`. While
messages wait (the record says how many), the next is taken and recorded in one script
instead, in Redis and at once too: one round trip where BLMOVE and the record are two.
(docs/kombu-redis-brpop-loses-a-message-taken-by-a-killed-worker.md; upstream, the take of
a one-list consumer: patches/kombu-5.7.0-redis-take-with-blmove.patch, and on it
patches/kombu-5.7.0-redis-take-and-record-while-messages-wait.patch.)

Redis cannot wait on several lists without popping from them (BRPOP) nor move from one of
several (BLMOVE takes one; redis/redis#1785). A worker of several lists (several queues,
or priority steps) takes with the same script, from the first of its lists that holds a
message, in kombu's order (priority first, its queues in turn); when none does, it waits
on its queues' bells (`<queue>.bell`, a sorted set of at most one member: BZPOPMIN waits
on several and a bell carries nothing to lose), which every publish rings, as does the
giving back of a dead worker's messages (liveness.py), and which a worker rings again
when it leaves messages behind, for the next idle one. A message put on a list past the
bells (published by stock kombu, or put back by kombu's restore after the visibility
timeout) is found within `brpop_timeout` (1 s), when the wait ends. With a
`global_keyprefix`, every key is prefixed, the package's too. (Upstream, on the two
patches above:
patches/kombu-5.7.0-redis-several-lists-take-by-script-and-wait-on-bells.patch.)

kombu's Redis channel decodes each message in the worker's event loop. Bytes that are
not a message (not JSON, a JSON value of another shape, an envelope without its
properties or headers) raise there, and the worker either exits ("Unrecoverable error")
or, the error being a KeyError, takes it for a lost connection: it cancels its running
tasks and reconnects, and a message the consumer had taken comes back to fail again.
Here such bytes are set aside, exactly as they were popped, in the Redis list
`<queue>.malformed` (`celery.malformed`), logged in one line (queue, size, first bytes,
what is wrong), and the worker goes on with the next message (README: how to read and
replay them; docs/kombu-redis-bytes-that-are-no-message-stop-the-worker.md; upstream:
patches/kombu-5.7.0-redis-sets-aside-bytes-that-are-no-message.patch).

A dead worker's messages go back within seconds, a live worker's never (liveness.py):
each consumer holds what it takes under a name it renews, and the scripts below record
and forget messages under that name.

Every command without a client of its own (each publish, acknowledgement and task event)
goes through one redis-py client per channel, where kombu builds a new one each time
(docs/kombu-redis-client-per-command.md)."""

import logging
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from queue import Empty
from time import time
from typing import Any, NamedTuple
from urllib.parse import quote

from kombu.transport import redis, virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import dumps, loads
from kombu.utils.url import as_url
from redis import Redis
from redis.exceptions import ConnectionError

from .liveness import (
    ALIVE,
    FORGET_OWNED,
    LIVENESS_WINDOW,
    Liveness,
    consumers_key,
    give_back,
    owners_key,
)

logger = logging.getLogger(__name__)


def malformed_list(queue: str) -> str:
    """Where the bytes popped from `queue` go when no worker can read them."""
    return queue + ".malformed"


def taking_list(queue: str) -> str:
    """Where a worker moves a message of `queue` until it has recorded it as unacknowledged."""
    return queue + ".taking"


def bell(queue: str) -> str:
    """What a worker of several lists waits on for a message of `queue` (see above)."""
    return queue + ".bell"


# A bell no worker waits on goes in this long, so that the bells of queues that come and
# go (each inspection's reply queue, an expiring queue) do not stay in Redis. A waiting
# worker takes a bell as it rings, and one that comes to wait first takes by script.
BELL_LASTS_MS = 10_000


def first_seen(queue: str) -> str:
    """The hash of when the periodic restore first saw each entry of `queue`'s taking list."""
    return taking_list(queue) + ".seen"


# Put back on the queue (KEYS[3]) what has stayed on its taking list (KEYS[1]) longer than
# ARGV[1] seconds: its worker died before recording it. When each entry was first seen is
# kept in a hash (KEYS[2]), by Redis's clock; entries that left are forgotten.
RESTORE_ABANDONED = """
local now = tonumber(redis.call('TIME')[1])
local present = {}
local restored = 0
for _, entry in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
    present[entry] = true
    local seen = redis.call('HGET', KEYS[2], entry)
    if not seen then
        redis.call('HSET', KEYS[2], entry, now)
    elseif now - tonumber(seen) > tonumber(ARGV[1]) then
        redis.call('LREM', KEYS[1], 1, entry)
        redis.call('RPUSH', KEYS[3], entry)
        redis.call('HDEL', KEYS[2], entry)
        restored = restored + 1
    end
end
for _, entry in ipairs(redis.call('HKEYS', KEYS[2])) do
    if not present[entry] then
        redis.call('HDEL', KEYS[2], entry)
    end
end
return restored
"""

# Record a message taken from its taking list (KEYS[3]) as unacknowledged: its delivery
# tag ARGV[1] in the index (KEYS[1]) at time ARGV[2], its record ARGV[3] in the hash
# (KEYS[2]), its consumer ARGV[5] in the owners (KEYS[6]), and its bytes ARGV[4] off the
# taking list. kombu's MULTI/EXEC, in one command. Returns how many messages still wait
# on the queue (KEYS[4]); or -1, the message put back there, if the consumer has been
# taken for dead (liveness.py: silent longer than ARGV[6] s in KEYS[5]).
RECORD_UNACKED = (
    ALIVE
    + """
redis.call('LREM', KEYS[3], 1, ARGV[4])
if not alive(KEYS[5], ARGV[5], ARGV[6], now()) then
    redis.call('RPUSH', KEYS[4], ARGV[4])
    return -1
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
if ARGV[5] ~= '' then
    redis.call('HSET', KEYS[6], ARGV[1], ARGV[5])
end
return redis.call('LLEN', KEYS[4])
"""
)

# Take the oldest message of the first list that holds one, and record it as
# unacknowledged as RECORD_UNACKED does (index KEYS[1], hash KEYS[2], at time ARGV[1];
# the record is kombu's: [message, exchange, routing key]; the consumer ARGV[3] in the
# owners KEYS[4]), in one command, with no taking list to leave; nothing (-1) if the
# consumer has been taken for dead (silent longer than ARGV[4] s in KEYS[3]). Each list
# comes as three keys from KEYS[5] on, in the order to take from: the list, its queue's
# taking list and its queue's bell. Bytes without a
# delivery tag and where they came from are moved onto the taking list instead, for the
# worker to set aside. The bell of each queue still holding messages is rung (to last
# ARGV[2] ms), for an idle worker of several lists; the others are silenced. Returns
# nothing when every list is empty, else the bytes, the tag they were recorded under
# (false if none), how many messages still wait and the position of the list taken
# from (0 for the first).
TAKE_AND_RECORD = (
    ALIVE
    + """
if not alive(KEYS[3], ARGV[3], ARGV[4], now()) then
    return -1
end
local raw, from
for i = 5, #KEYS, 3 do
    raw = redis.call('RPOP', KEYS[i])
    if raw then
        from = i
        break
    end
end
if not raw then
    return nil
end
local decoded, message = pcall(cjson.decode, raw)
local properties = decoded and type(message) == 'table' and message.properties
local tag = type(properties) == 'table' and properties.delivery_tag
local came = type(properties) == 'table' and properties.delivery_info
if type(tag) == 'string' and type(came) == 'table'
        and came.exchange ~= nil and came.routing_key ~= nil then
    local record = '[' .. raw .. ',' .. cjson.encode(came.exchange) .. ','
        .. cjson.encode(came.routing_key) .. ']'
    redis.call('ZADD', KEYS[1], ARGV[1], tag)
    redis.call('HSET', KEYS[2], tag, record)
    if ARGV[3] ~= '' then
        redis.call('HSET', KEYS[4], tag, ARGV[3])
    end
else
    tag = false
    redis.call('LPUSH', KEYS[from + 1], raw)
end
local waiting, ring = 0, {}
for i = 5, #KEYS, 3 do
    local held = redis.call('LLEN', KEYS[i])
    waiting = waiting + held
    ring[KEYS[i + 2]] = ring[KEYS[i + 2]] or held > 0
end
for key, rung in pairs(ring) do
    if rung then
        redis.call('ZADD', key, 0, '')
        redis.call('PEXPIRE', key, ARGV[2])
    else
        redis.call('DEL', key)
    end
end
return {raw, tag, waiting, (from - 5) / 3}
"""
)

# Forget the unacknowledged message ARGV[1]: out of the index (KEYS[1]) and the hash (KEYS[2]).
FORGET_UNACKED = """
redis.call('ZREM', KEYS[1], ARGV[1])
return redis.call('HDEL', KEYS[2], ARGV[1])
"""

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


class TakenForDead(ConnectionError):
    """This channel's consumer was silent for longer than the liveness window, and the
    other workers gave its messages back (liveness.py). A connection error, so that
    Celery drops what it had reserved and reconnects, under a new name."""

    def __init__(self) -> None:
        super().__init__(
            "This worker's consumer was taken for dead (silent in Redis for longer than"
            " the liveness window): its messages went back to their queues"
        )


class TakingQoS(redis.QoS):
    channel: "Channel"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The tags this channel's consumer holds under its name (liveness.py).
        self.owned: set[str] = set()

    def append(self, message: Any, delivery_tag: str) -> None:
        # kombu 5.7's own, but for the message leaving the taking list in the same
        # command that records it as unacknowledged: one script where kombu's transaction
        # is four commands and five replies to read; with the acknowledgement's, nearly a
        # fifth of the worker's CPU for a short task
        # (docs/kombu-redis-unacked-bookkeeping-in-transactions.md; upstream, kombu's own
        # in a script: patches/kombu-5.7.0-unacked-bookkeeping-in-scripts.patch).
        taken = self.channel.taken
        if taken is None:
            super().append(message, delivery_tag)
            return
        self.channel.taken = None
        name = self.channel.consumer_name()
        if taken.tag is None:  # on the taking list, not yet recorded
            delivery = message.delivery_info
            record = dumps([message._raw, delivery["exchange"], delivery["routing_key"]])
            keys = [self.unacked_index_key, self.unacked_key, taking_list(taken.queue), taken.queue,
                    consumers_key(self.unacked_key), owners_key(self.unacked_key)]  # fmt: skip
            args = [delivery_tag, time(), record, taken.raw, name, self.channel.liveness_window]
            waiting = self.channel.run(RECORD_UNACKED, keys, args)
            if waiting < 0:
                raise TakenForDead()
            self.channel.backlog = waiting > 0
        if name:
            self.owned.add(delivery_tag)
        virtual.QoS.append(self, message, delivery_tag)

    def ack(self, delivery_tag: str) -> None:
        # kombu 5.7's own, in one script for the same reason; a message this channel's
        # consumer took is forgotten only while the consumer holds it (once given back,
        # it may be another's under the same tag: liveness.py).
        keys = [self.unacked_index_key, self.unacked_key]
        if delivery_tag in self.owned:
            self.owned.discard(delivery_tag)
            keys.append(owners_key(self.unacked_key))
            self.channel.run(FORGET_OWNED, keys, [delivery_tag, self.channel.consumer_name()])
        else:
            self.channel.run(FORGET_UNACKED, keys, [delivery_tag])
        virtual.QoS.ack(self, delivery_tag)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        if requeue or delivery_tag not in self.owned:
            super().reject(delivery_tag, requeue)
        else:  # (kombu's is its ack)
            self.ack(delivery_tag)

    def restore_by_tag(self, tag: str, client: Any = None, leftmost: bool = False) -> None:
        # kombu's, for a rejected message or one still held as the channel closes; but a
        # message of this channel's consumer only while it still holds it.
        if tag in self.owned:
            self.owned.discard(tag)
            give_back(self.channel, tag, self.channel.consumer_name(), leftmost)
        else:
            super().restore_by_tag(tag, client, leftmost)

    def restore_visible(self, *args: Any, **kwargs: Any) -> None:
        super().restore_visible(*args, **kwargs)
        for queue in self.channel.active_queues:
            keys = [taking_list(queue), first_seen(queue), queue]
            if count := self.channel.run(RESTORE_ABANDONED, keys, [self.visibility_timeout]):
                logger.warning("Restored %d message(s) a dead worker had taken from %r",
                               count, queue)  # fmt: skip


class Taken(NamedTuple):
    """A message taken off its queue, not yet handed to its consumer: on the taking list,
    or (with its tag) recorded as unacknowledged already."""

    queue: str
    raw: bytes
    tag: str | None = None


class Channel(redis.Channel):
    QoS = TakingQoS
    qos: TakingQoS
    from_transport_options = (*redis.Channel.from_transport_options, "liveness_window")
    liveness_window = LIVENESS_WINDOW
    # This channel's name as a consumer, once it consumes with acknowledgements.
    liveness: Liveness | None = None
    # The message being delivered, until its consumer's QoS.append has it recorded.
    taken: Taken | None = None
    # The lists the take in flight takes from, in order, each with its queue.
    _taking_from: list[tuple[str, str]]
    # The take in flight: BLMOVE (one list) or BZPOPMIN (the bells of several), which
    # wait for a message, or EVAL (TAKE_AND_RECORD), which does not.
    _take_command = "BLMOVE"
    # Whether to take with the script next: messages waited at the last take (then it is
    # one round trip where BLMOVE and the record are two: README, *What it costs*), or a
    # bell rang. Else a worker waits.
    backlog = False
    # The client every publish, acknowledgement and event goes through, on kombu's pool.
    _client: Any = None

    # This channel's scripts, by their text, on the kept client.
    _scripts: dict[str, Any]
    # The client the scripts run on: the kept one, but for a global_keyprefix, which
    # kombu's client adds to a script's first key only (run() prefixes them all).
    _scripts_client: Any = None

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        # kombu builds a new redis-py client for each call here (each publish, ack and
        # event), which costs more than the command it sends
        # (docs/kombu-redis-client-per-command.md; upstream, the patch
        # patches/kombu-5.7.0-redis-client-per-channel.patch). One client is kept instead,
        # rebuilt whenever kombu replaces its pool (after a fork or a lost connection).
        if client is None:
            # (A client class without a pool of its own, as kombu allows, gets a new one
            # each time, as with kombu.)
            kept = getattr(self._client, "connection_pool", None)
            if kept is None or kept is not self.pool:
                self._client = self._create_client()  # type: ignore[attr-defined]
                self._scripts = {}
                self._scripts_client = self._client
                if self.global_keyprefix:
                    self._scripts_client = Redis(connection_pool=self.pool)
            client = self._client
        yield client

    def plain_client(self) -> Any:
        """A client that sends keys as they are: give it `prefixed()` ones."""
        with self.conn_or_acquire():
            return self._scripts_client

    def consumer_name(self) -> str:
        return "" if self.liveness is None else self.liveness.name

    def basic_consume(self, queue: str, no_ack: bool, *args: Any, **kwargs: Any) -> Any:
        if not no_ack and self.liveness is None:
            self.liveness = Liveness(self)
        return super().basic_consume(queue, no_ack, *args, **kwargs)

    def close(self) -> None:
        # kombu's gives back what the channel still holds; then the name goes, unless
        # something could not be given back (Redis away): that waits for the others.
        liveness = self.liveness
        if liveness is None or self.closed:
            super().close()
            return
        liveness.stop()
        errors, client = self.connection.connection_errors, self.plain_client()
        [consumers] = self.prefixed(consumers_key(self.unacked_key))
        super().close()
        if not self.qos.owned:
            with suppress(*errors):
                client.zrem(consumers, liveness.name)

    def run(self, script: str, keys: list[str], args: list[Any]) -> Any:
        """Run a Lua script in Redis, by its digest (redis-py loads it again should
        Redis have lost it: a restart, a failover), on `keys` as kombu names them."""
        with self.conn_or_acquire() as client:
            if (runner := self._scripts.get(script)) is None:
                runner = self._scripts[script] = client.register_script(script)
            return runner(keys=self.prefixed(*keys), args=args, client=self._scripts_client)

    def prefixed(self, *keys: str) -> list[str]:
        """`keys` as they are in Redis: with the global_keyprefix, which kombu's client
        adds to the keys of the commands it knows, not to those sent past it."""
        return [self.global_keyprefix + key for key in keys]

    def _put(self, queue: str, message: Any, **kwargs: Any) -> None:
        # kombu's own, with the queue's bell rung in the same round trip. kombu's batch
        # of publishes (its producer's) takes the commands as they are; else they are
        # collected from kombu's and sent in one pipeline.
        batch = kwargs.pop("_publish_batch", None)
        commands = Commands() if batch is None else batch
        super()._put(queue, message, _publish_batch=commands, **kwargs)  # type: ignore[call-arg]
        commands.add("zadd", bell(queue), {"": 0})
        commands.add("pexpire", bell(queue), self.bell_lasts_ms(queue))
        if batch is None:
            with self.conn_or_acquire() as client:
                commands.execute(client.pipeline(transaction=False))

    def bell_lasts_ms(self, queue: str) -> int:
        """How long a ring of `queue`'s bell lasts untaken: a queue that expires sooner
        (x-expires) takes its bell with it, as its lists."""
        return min(self._expires.get(queue, BELL_LASTS_MS), BELL_LASTS_MS)  # type: ignore[attr-defined]

    def bells_of(self, lists: list[str]) -> list[tuple[str, int]]:
        """The bells of the queues of these lists (a queue's own, or one of its priority
        steps': kombu names those `<queue><sep><step>`), each with how long a ring lasts."""
        queues = dict.fromkeys(key.split(self.sep, 1)[0] for key in lists)
        return [(bell(queue), self.bell_lasts_ms(queue)) for queue in queues]

    def _purge(self, queue: str) -> int:
        # kombu's empties the queue; what a dead worker left taking would come back to it
        # after the visibility timeout and run: it goes too, and counts (upstream:
        # patches/kombu-5.7.0-redis-purge-counts-the-taking-list.patch).
        taking = taking_list(queue)
        with self.conn_or_acquire() as client:
            pipe = client.pipeline().llen(taking).delete(taking, first_seen(queue), bell(queue))
            held, *_ = pipe.execute()
        return int(super()._purge(queue)) + int(held)  # type: ignore[misc]

    def _brpop_start(self, timeout: float | None = None) -> None:
        queues = self._queue_cycle.consume(len(self.active_queues))  # type: ignore[attr-defined]
        if not queues:
            return
        # kombu's order: the first priority step of every queue, then the next...
        lists = [(queue, self._q_for_pri(queue, step))  # type: ignore[attr-defined]
                 for step in self.priority_steps for queue in queues]  # fmt: skip
        self._taking_from = lists
        self._in_poll = self.client.connection
        # kombu's clock, which its health check of the take reads (kombu's own tests
        # set it).
        self._brpop_sent_at = redis.monotonic()  # type: ignore[attr-defined]
        wait = self.brpop_timeout if timeout is None else timeout
        # The keys are sent past kombu's client, which prefixes those of BRPOP only.
        if self.backlog:
            self._take_command = "EVAL"
            unacked = self.qos.unacked_key
            keys = [
                self.qos.unacked_index_key,
                unacked,
                consumers_key(unacked),
                owners_key(unacked),
            ]
            for queue, key in lists:
                keys += [key, taking_list(queue), bell(queue)]
            keys = self.prefixed(*keys)
            args = [time(), BELL_LASTS_MS, self.consumer_name(), self.liveness_window]
            command = ["EVAL", TAKE_AND_RECORD, len(keys), *keys, *args]
        elif len(lists) == 1:
            self._take_command = "BLMOVE"
            [(queue, key)] = lists
            keys = self.prefixed(key, taking_list(queue))
            command = ["BLMOVE", *keys, "RIGHT", "LEFT", wait or 0]
        else:
            self._take_command = "BZPOPMIN"
            command = ["BZPOPMIN", *self.prefixed(*map(bell, queues)), wait or 0]
        self.client.connection.send_command(*command)

    def _brpop_read(self, **options: Any) -> bool:
        # kombu 5.7's own, but for the reply of what _brpop_start sent, and for the bytes
        # going through _deliver_or_set_aside instead of straight to the consumer.
        # (kombu's type stubs leave out the private parts it uses.)
        command = self._take_command
        try:
            try:
                reply = self.client.parse_response(self.client.connection, command, **options)
            except self.connection_errors:  # type: ignore[attr-defined]
                # Dropped, so that the next poll reconnects.
                self.client.connection.disconnect()
                raise
            if command == "BZPOPMIN":
                # A bell, or the end of the wait: take with the script next, which also
                # finds what was put on a list without ringing.
                self.backlog = True
                self._fail_if_taken_for_dead()
                raise Empty()
            if reply is None:  # (an empty message is b"", bad bytes to set aside)
                self.backlog = False
                self._fail_if_taken_for_dead()
                raise Empty()
            if reply == -1:  # the script's refusal
                raise TakenForDead()
            if command == "BLMOVE":
                [(queue, _key)] = self._taking_from
                self._deliver_taken(Taken(queue, reply))
                return True
            raw, tag, waiting, position = reply
            self.backlog = waiting > 0
            queue, _key = self._taking_from[position]
            self._queue_cycle.rotate(queue)  # type: ignore[attr-defined]
            self._deliver_taken(Taken(queue, raw, tag and bytes_to_str(tag)))
            return True
        finally:
            self._in_poll = None
            # The connection is idle here: kombu's moment to renew its credentials.
            self._flush_brpop_reauth()  # type: ignore[attr-defined]

    def _fail_if_taken_for_dead(self) -> None:
        if self.liveness is not None and self.liveness.lost:
            raise TakenForDead()

    def _deliver_taken(self, taken: Taken) -> None:
        """Deliver a message taken off its queue. Its consumer's QoS.append records it as
        unacknowledged (off the taking list); taken by a consumer that does not
        acknowledge, or set aside, it is let go."""
        self.taken = taken
        try:
            self._deliver_or_set_aside(taken.queue, taken.raw)
            if self.taken is not None:  # taken without an acknowledgement to wait for
                with self.conn_or_acquire() as client:
                    self._let_go(client.pipeline(), taken).execute()
        finally:
            self.taken = None

    def _let_go(self, pipe: Any, taken: Taken) -> Any:
        """Add to `pipe` what takes `taken` off the taking list, or out of the
        unacknowledged record where the take recorded it."""
        if taken.tag is None:
            [taking] = self.prefixed(taking_list(taken.queue))  # (kombu's pipeline: LREM raw)
            return pipe.lrem(taking, 1, taken.raw)
        # kombu's own, which its ack and reject use (its stubs leave the private parts out),
        # and the owner the take recorded, if any.
        self.qos._remove_from_indices(taken.tag, pipe)  # type: ignore[attr-defined]
        return pipe.hdel(owners_key(self.unacked_key), taken.tag)

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
        malformed = malformed_list(queue)
        with self.conn_or_acquire() as client:
            pipe = client.pipeline().lpush(malformed, raw)
            if self.taken is not None:
                self._let_go(pipe, self.taken)
                self.taken = None
            pipe.execute()
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


class Commands(list[tuple[str, tuple[Any, ...]]]):
    """Redis commands collected as kombu's batch of publishes collects them."""

    def add(self, name: str, *args: Any) -> None:
        self.append((name, args))

    def execute(self, pipe: Any) -> None:
        for name, args in self:
            getattr(pipe, name)(*args)
        pipe.execute()


class ShowsItsScheme:
    """A transport named by its class path (Celery's broker_transport) that still shows
    its URL as redis://, rediss:// or sentinel://.

    kombu writes the transport's name where the URL's scheme was: the worker's banner
    would read `celery_guarantees.redis_transport:Transport://...`, and Flower, which
    picks its broker client by that scheme, would know no broker. kombu lets a transport
    that parses its own URLs display them; this one has kombu parse them (the class says
    it cannot) and displays them itself (the instance says it can)
    (docs/kombu-switch-drops-the-named-transport.md; upstream, kombu writes the URL's scheme:
    patches/kombu-5.7.0-named-transport-keeps-the-urls-scheme.patch)."""

    client: Any
    scheme: str

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)  # type: ignore[call-arg]
        self.can_parse_url = True

    def as_uri(self, uri: str, include_password: bool = False, mask: str = "**") -> str:
        info = self.client.info()
        password = info["password"]
        if not include_password:
            password = mask
        elif callable(password):
            password = password()
        scheme = "rediss" if self.scheme == "redis" and info["ssl"] else self.scheme
        return as_url(
            scheme, info["hostname"], info["port"], info["userid"], password,
            quote(info["virtual_host"]), sanitize=not include_password, mask=mask,
        )  # fmt: skip


class Transport(ShowsItsScheme, redis.Transport):
    Channel = Channel
    scheme = "redis"


class SentinelChannel(Channel, redis.SentinelChannel):
    """The same, on a Redis reached through Sentinel (sentinel:// URLs)."""

    from_transport_options = (*redis.SentinelChannel.from_transport_options, "liveness_window")


class SentinelTransport(ShowsItsScheme, redis.SentinelTransport):
    Channel = SentinelChannel
    scheme = "sentinel"
