"""A small task's start during a mailing: the seconds from .delay() to a task starting,
for one sent every SAMPLE_EVERY while a 10,000-customer notification runs. Measured
with the emails' batches on the mail queue and a worker for each queue, as the Procfile
runs them (worker -Q celery, mailer -Q mail), against the baseline of every task on one
queue and one worker (as before the mail queue: bench/one_queue.py); and with one
worker of both queues (the course's `celery -A storefront worker`), under the table.
Every worker has the project's default concurrency."""

import time

from celery_guarantees.testing.waiting import wait_until

from bench.job import CUSTOMERS, MESSAGE, seed_to, smtp_sink
from bench.stage import p50_p99, row
from bench.tasks import stamp
from playground.models import Notification
from playground.tasks import notify_customers

SAMPLE_EVERY = 0.05


def small_task_latency(stage):
    with smtp_sink(stage):
        seed_to(stage, CUSTOMERS)
        one_queue = {**stage.env, "DJANGO_SETTINGS_MODULE": "bench.one_queue"}
        before, before_seconds = during_a_mailing(stage, lambda: stage.worker(env=one_queue))
        after, after_seconds = during_a_mailing(
            stage,
            lambda: [stage.worker(None, "--queues=celery"), stage.worker(None, "--queues=mail")],
        )
        both, both_seconds = during_a_mailing(stage, lambda: stage.worker())
    (a50, a99), (b50, b99) = p50_p99(after), p50_p99(before)
    measure = "small task's start during a 10,000-email mailing, worker + mailer"
    lines = [
        "A small task's start during a 10,000-email mailing, ms (p50, p99, max),"
        " and the mailing's own time:",
        summary("one queue, one worker (before the mail queue)", before, before_seconds),
        summary("mail queue, one worker of both queues", both, both_seconds),
        summary("mail queue, worker -Q celery + mailer -Q mail", after, after_seconds),
    ]
    return [
        row(f"{measure}, p50", a50 * 1e3, b50 * 1e3, "ms", lower_is_better=True),
        row(f"{measure}, p99", a99 * 1e3, b99 * 1e3, "ms", lower_is_better=True),
        {"detail": "\n".join(lines)},
    ]


def during_a_mailing(stage, start_workers):
    """The start latency of each small task sent while a notification to every customer
    runs on the workers `start_workers()` starts, and the notification's seconds."""
    start_workers()
    result = notify_customers.delay(MESSAGE)
    started, sent = time.perf_counter(), 0
    while not Notification.objects.filter(id=result.id, status="done").exists():
        stamp.delay(time.time())
        sent += 1
        time.sleep(SAMPLE_EVERY)
    seconds = time.perf_counter() - started
    wait_until(lambda: stage.broker.llen("bench:latency") == sent, timeout=120)
    latencies = [float(each) for each in stage.broker.lrange("bench:latency", 0, -1)]
    stage.stop_all()
    return latencies, seconds


def summary(label, latencies, seconds):
    (p50, p99), worst = p50_p99(latencies), max(latencies)
    return f"  {label}: {p50 * 1e3:,.0f}, {p99 * 1e3:,.0f}, {worst * 1e3:,.0f} ({seconds:.1f} s)"
