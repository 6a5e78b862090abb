"""Celery Beat's scheduler, kept to one Beat per deployment: two Beats would send every
periodic task twice, with no warning. A Beat holds a lock in the cache's Redis
(REDIS_CACHE_URL, whatever the broker) while it runs; a second one refuses to start.

It keeps no schedule file: a Beat that starts counts every entry from its own start,
so it never fires at once what it missed while it was down (a stale
celerybeat-schedule would send a missed crontab mailing the moment Beat starts)."""

import logging

import redis
from celery.beat import Scheduler
from django.conf import settings
from django.db import close_old_connections

from storefront import sentinel

logger = logging.getLogger(__name__)

ANOTHER_BEAT = "beat: another Celery Beat holds the lock; exactly one may run."


class SingleBeatScheduler(Scheduler):
    lock_name = "storefront:beat"
    # Long enough to ride out a pause, short enough that a killed Beat's successor
    # can start soon after.
    lock_timeout = 30

    def setup_schedule(self):
        client = sentinel.client(settings.REDIS_CACHE_URL)
        self.lock = client.lock(self.lock_name, timeout=self.lock_timeout)
        if not self.lock.acquire(blocking=False):
            raise SystemExit(ANOTHER_BEAT)
        super().setup_schedule()

    def tick(self, *args, **kwargs):
        try:
            held = self.lock.owned() and self.lock.reacquire()
            if not held and not self.lock.acquire(blocking=False):
                logger.error(ANOTHER_BEAT)
                raise SystemExit(ANOTHER_BEAT)
        except redis.ConnectionError as error:
            # Nothing can be sent while Redis is away; keep the schedule and wait.
            logger.warning("beat: cannot refresh its lock (%s)", error)
        # notify_customers goes through the outbox, a row in the database: as at a
        # request's start, a connection the database dropped (a restart, a failover)
        # is let go, so that one send fails, not every send after it.
        close_old_connections()
        # Wake often enough to refresh the lock before it expires.
        return min(super().tick(*args, **kwargs), self.lock_timeout / 3)

    def close(self):
        if self.lock.owned():
            self.lock.release()
        super().close()
