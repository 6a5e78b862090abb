"""Tasks for the benchmarks only: workers load them with `-I bench.tasks`."""

import time
from functools import cache

import redis
from celery import shared_task
from django.conf import settings


@cache
def client():
    return redis.Redis.from_url(settings.CELERY_BROKER_URL)


@shared_task(ignore_result=True)
def tally():
    """Does nothing but count itself (one INCR, as the floor does): what a worker
    drains per second is then its own overhead."""
    client().incr("bench:done")


@shared_task(ignore_result=True)
def stamp(sent_at):
    """Reports how long after `sent_at` (time.time() at .delay()) it started."""
    client().rpush("bench:latency", time.time() - sent_at)
