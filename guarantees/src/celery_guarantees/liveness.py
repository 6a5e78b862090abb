"""A dead worker's messages back on their queues within seconds, not after the
visibility timeout.

kombu gives a message taken but never acknowledged back once it has been unacknowledged
longer than the visibility timeout. That timeout must exceed the longest task (or a live
worker's task would run twice), so a worker killed whole (OOM, a crash, a lost host)
leaves its messages waiting for minutes. Here a channel that consumes with
acknowledgements is a *consumer* of its own name (`<host>.<pid>.<random>`):

- it renews its name in the sorted set `unacked_consumers` (name -> when, by Redis's
  clock) every fifth of the liveness window, from a thread of its own, so that a worker
  busy in its event loop or in a long task is never taken for dead, while a killed or
  frozen one stops renewing with everything else;
- it records each message it takes under its name (the hash `unacked_owner`, tag ->
  name) in the script that records it as unacknowledged, and each renewal moves its
  messages' time in kombu's `unacked_index` to now: kombu's restore of what outstayed the
  visibility timeout never takes a live consumer's message, however long its task runs;
- the same renewal lists the names silent for longer than the window (5 s by default,
  the transport option `liveness_window`), and gives their messages back to their queues,
  each in one script that checks it still is that name's (no message in two places, or
  in none), as kombu's restore does: marked redelivered, routed by its exchange;
- a name silent past the window is dead for good, by Redis's clock: its renewals, its
  takes and its records are refused from then on. A consumer that was frozen (SIGSTOP, a
  paused VM) and resumes finds that out and fails as a lost connection does: Celery
  drops the messages it had reserved and reconnects under a new name, and what it still
  acknowledges of the old name's messages is acknowledged only where that name still
  holds them (they may be another consumer's by then).

What no name covers (a message on `<queue>.taking` between the move and its record, a
record written by stock kombu) keeps the visibility timeout.
(docs/kombu-redis-dead-workers-messages-wait-for-the-visibility-timeout.md; upstream:
patches/kombu-5.7.0-redis-consumer-liveness.patch.)"""

import logging
import os
import secrets
import socket
import threading
import weakref
from time import time
from typing import Any

from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads

logger = logging.getLogger(__name__)

# How long a consumer may stay silent before its messages go back: the renewals come
# every fifth of it, so a few late ones (a loaded host) are not taken for a death.
LIVENESS_WINDOW = 5.0


def consumers_key(unacked_key: str) -> str:
    """The sorted set of consumer names -> when each last renewed."""
    return unacked_key + "_consumers"


def owners_key(unacked_key: str) -> str:
    """The hash of delivery tag -> the name of the consumer holding that message."""
    return unacked_key + "_owner"


# Lua, for the scripts that keep or check a consumer's name: Redis's clock, in seconds;
# and whether the name is alive in the sorted set `consumers` at time `at` (renewed
# within `window` seconds). A name of '' is no consumer's (no acknowledgements): alive.
ALIVE = """
local function now()
    local time = redis.call('TIME')
    return time[1] + time[2] / 1e6
end
local function alive(consumers, name, window, at)
    if name == '' then
        return true
    end
    local renewed = redis.call('ZSCORE', consumers, name)
    return renewed and at - tonumber(renewed) <= tonumber(window)
end
"""

# A new consumer's name ARGV[1] in the sorted set KEYS[1], renewed now.
REGISTER = ALIVE + "return redis.call('ZADD', KEYS[1], now(), ARGV[1])"

# Renew the name ARGV[1] in KEYS[1] unless it has been silent longer than ARGV[2] s (then
# it is dead: returns nil), and the time (ARGV[3]) in kombu's index KEYS[2] of the tags
# it holds, ARGV[4] on. Returns the names silent longer than the window.
RENEW = (
    ALIVE
    + """
local at = now()
if not alive(KEYS[1], ARGV[1], ARGV[2], at) then
    return nil
end
redis.call('ZADD', KEYS[1], at, ARGV[1])
for i = 4, #ARGV do
    redis.call('ZADD', KEYS[2], 'XX', ARGV[3], ARGV[i])
end
return redis.call('ZRANGE', KEYS[1], '-inf', '(' .. (at - ARGV[2]), 'BYSCORE')
"""
)

# Give the message of tag ARGV[1] back, if the consumer ARGV[2] still holds it (owners
# KEYS[3]) under the record ARGV[3] (the hash KEYS[2]): out of the index (KEYS[1]) and
# the hashes, and pushed by ARGV[4] (LPUSH or RPUSH) onto each of the ARGV[5] lists
# KEYS[4...] as the bytes ARGV[6...]; then each bell in the rest of KEYS is rung, to
# last the ms in the rest of ARGV, so that an idle worker of several lists takes it at
# once. Returns 1 if it did.
GIVE_BACK = """
if redis.call('HGET', KEYS[3], ARGV[1]) ~= ARGV[2]
        or redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[3] then
    return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
local lists = tonumber(ARGV[5])
for i = 1, lists do
    redis.call(ARGV[4], KEYS[3 + i], ARGV[5 + i])
end
for i = 4 + lists, #KEYS do
    redis.call('ZADD', KEYS[i], 0, '')
    redis.call('PEXPIRE', KEYS[i], ARGV[i + 2])
end
return 1
"""

# Forget the message of tag ARGV[1] (acknowledged), if the consumer ARGV[2] still holds it.
FORGET_OWNED = """
if redis.call('HGET', KEYS[3], ARGV[1]) ~= ARGV[2] then
    return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return redis.call('HDEL', KEYS[3], ARGV[1])
"""

# Forget the owner of tag ARGV[1] if it is still ARGV[2]: its record went another way
# (kombu's restore of what outstayed the visibility timeout leaves the owner behind).
DROP_OWNER = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
    return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"""


class Pushes(list[tuple[str, str, str]]):
    """The pushes kombu's restore of a message would add to its pipeline."""

    def lpush(self, key: str, value: str) -> None:
        self.append(("LPUSH", key, value))

    def rpush(self, key: str, value: str) -> None:
        self.append(("RPUSH", key, value))


class Liveness:
    """A channel's name as a consumer, renewed in Redis by a thread while the channel
    lives, and the renewal's other half: the giving back of dead consumers' messages.
    `channel` is the package's Channel (its scripts, keys and kombu's restore)."""

    def __init__(self, channel: Any) -> None:
        self.name = f"{socket.gethostname()}.{os.getpid()}.{secrets.token_hex(4)}"
        self.window: float = channel.liveness_window
        # Whether Redis refused a renewal: the name was taken for dead.
        self.lost = False
        self._stopped = threading.Event()
        self._channel = weakref.ref(channel)
        channel.run(REGISTER, [consumers_key(channel.unacked_key)], [self.name])
        thread = threading.Thread(target=self._keep, name=f"liveness {self.name}", daemon=True)
        thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def _keep(self) -> None:
        away = False  # since the last renewal that reached Redis: said once, not each time
        while not self._stopped.wait(self.window / 5):
            channel = self._channel()
            if channel is None:
                return
            try:
                self.renew(channel)
            except Exception as error:  # Redis away: the next renewal tries again
                if not away:
                    logger.warning(
                        "Could not renew consumer %s in Redis (%s): trying again every %s s",
                        self.name, error, self.window / 5,
                    )  # fmt: skip
                away = True
            else:
                if away:
                    logger.warning("Consumer %s renewed in Redis again", self.name)
                away = False
            if self.lost:
                return
            del channel

    def renew(self, channel: Any) -> None:
        """Renew the name, and give back the messages of the consumers found dead."""
        qos = channel.qos
        keys = [consumers_key(channel.unacked_key), channel.unacked_index_key]
        held = list(qos.owned)
        dead = channel.run(RENEW, keys, [self.name, self.window, time(), *held])
        if dead is None:
            self.lost = True
            logger.error(
                "This worker's consumer %s was silent in Redis for longer than %s s"
                " (frozen, or cut off) and was taken for dead: the messages it held went"
                " back to their queues. It reconnects under a new name.",
                self.name, self.window,
            )  # fmt: skip
        elif dead:
            self.give_back_the_messages_of(channel, [bytes_to_str(name) for name in dead])

    def give_back_the_messages_of(self, channel: Any, dead: list[str]) -> None:
        client = channel.plain_client()
        [consumers, owners] = channel.prefixed(
            consumers_key(channel.unacked_key), owners_key(channel.unacked_key)
        )
        given = 0
        for tag, owner in client.hgetall(owners).items():
            if (owner := bytes_to_str(owner)) in dead:
                given += give_back(channel, bytes_to_str(tag), owner)
        client.zrem(consumers, *dead)
        logger.warning(
            "Gave back %d message(s) held by %d worker consumer(s) silent for longer than"
            " %s s (%s)", given, len(dead), self.window, ", ".join(dead),
        )  # fmt: skip


def give_back(channel: Any, tag: str, owner: str, leftmost: bool = False) -> bool:
    """Give the message of `tag` back to its queue, as kombu's restore does (marked
    redelivered, routed by its exchange), if the consumer `owner` still holds it."""
    unacked, owners = channel.unacked_key, owners_key(channel.unacked_key)
    [unacked_in_redis] = channel.prefixed(unacked)
    record = channel.plain_client().hget(unacked_in_redis, tag)
    if record is None:  # acknowledged, or restored by kombu's visibility timeout
        channel.run(DROP_OWNER, [owners], [tag, owner])
        return False
    message, exchange, routing_key = loads(bytes_to_str(record))
    pushes = Pushes()
    channel._do_restore_message(message, exchange, routing_key, pushes, leftmost)
    if not pushes:  # kombu could not route it, and said so: left for the timeout
        return False
    lists = [key for _, key, _ in pushes]
    bells = channel.bells_of(lists)
    keys = [channel.unacked_index_key, unacked, owners, *lists, *(key for key, _ in bells)]
    [(command, _, _), *_] = pushes
    args = [tag, owner, record, command, len(lists), *(value for _, _, value in pushes)]
    args += [lasts for _, lasts in bells]
    return bool(channel.run(GIVE_BACK, keys, args))
