"""The mail provider's cap on emails per second, kept by the whole deployment.

Providers cap sends per second per account and answer 4xx past it, or suspend the
account; Celery's rate_limit is per worker process, so three workers would send three
times a limit set there. Here every worker process on every host takes a turn before
each message from one log in Redis (the cache's), a sorted set of the turns that still
count, and sleeps until one frees when the cap's worth do.

A turn counts from when it is given until a second after its message was handed over
(the server's answer read): the next turn in its place is given only then, so the
server takes it more than a second after the one before, however long each process
took between its turn and the server. Turns are timed by Redis's clock, in the script
that gives them. (pyrate-limiter, the ecosystem's limiter on Redis, stamps a request
with the asking process's clock and counts it from then: with a second of 1.05 s, the
SMTP server still saw 201 messages within a second at a cap of 200, from a process
paused between its clock and Redis, or between its turn and the server.)"""

import time
import uuid
from functools import cache
from typing import Any

from django.conf import settings

from storefront import sentinel

LOG = "storefront:notify-rate"
SECOND_MS = 1000
# A turn whose message never reports back (its worker died mid-handover) stops counting
# after this long; the log goes too once nobody has taken a turn for as long.
HANDOVER_LASTS_MS = 60_000
# While every turn that counts is being handed over, how long a process sleeps before
# asking again (with a cap no higher than the processes sending at once).
RECHECK_MS = 10

# Give turn ARGV[2] if fewer than ARGV[1] turns count in the log (KEYS[1]), each scored
# with when it stops counting; it counts for ARGV[3] ms, until it is ended. Returns 0
# once given, else how many ms until one may free: to the first that stops counting,
# or ARGV[4] while all that count are being handed over.
TAKE = """
local clock = redis.call('TIME')
local now = clock[1] * 1000 + math.floor(clock[2] / 1000)
-- Only turns whose millisecond has passed: `now` is truncated, so one scored `now`
-- may still count for up to a millisecond.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
    redis.call('PEXPIRE', KEYS[1], ARGV[3])
    return 0
end
local first = tonumber(redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2]) - now
if first > tonumber(ARGV[5]) then
    return tonumber(ARGV[4])
end
return math.max(first, 1)
"""

# Turn ARGV[1], its message handed over, counts ARGV[2] ms more (if it still counts).
END = """
local clock = redis.call('TIME')
local now = clock[1] * 1000 + math.floor(clock[2] / 1000)
return redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
"""


@cache
def scripts() -> tuple[Any, Any]:
    """This process's scripts on the cache's Redis (registered once per process)."""
    client = sentinel.client(settings.REDIS_CACHE_URL)
    return client.register_script(TAKE), client.register_script(END)


class Turn:
    """One message's turn within NOTIFY_RATE_LIMIT: take() before the handover, and
    ended (leaving the `with` block) after it, however it went. Without a cap, nothing."""

    def __init__(self) -> None:
        self.id: str | None = None

    def __enter__(self) -> "Turn":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.end()

    def take(self) -> None:
        """Return once the turn is given, asleep until then."""
        if not settings.NOTIFY_RATE_LIMIT:
            return
        take, _end = scripts()
        self.id = uuid.uuid4().hex
        args = [settings.NOTIFY_RATE_LIMIT, self.id, HANDOVER_LASTS_MS, RECHECK_MS, SECOND_MS]
        while wait_ms := take(keys=[LOG], args=args):
            time.sleep(wait_ms / 1000)

    def end(self) -> None:
        if self.id is not None:
            _take, end = scripts()
            end(keys=[LOG], args=[self.id, SECOND_MS])
            self.id = None
