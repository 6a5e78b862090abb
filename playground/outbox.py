"""Sending a task never fails its caller because of the broker, and never gets lost
between the database and the broker.

`enqueue()` is the one way in, a transactional outbox: the message is written in the
caller's transaction (with the rows it belongs to) and published once that commits. A
process killed in between, or a broker that cannot take it (down, or hung), leaves the
row, and Beat's relay_outbox publishes it. Tasks whose base class is OutboxTask are
sent through it by `.delay()` and `.apply_async()`, as the course writes them.

A kept message keeps its task id, so a task can tell a relayed message from a new one,
and its caller's trace (storefront/tracing.py), so a relayed notification is still one
trace from the page that started it."""

import logging
import math
from datetime import UTC, datetime, timedelta
from typing import Any

from celery import Task, current_app
from celery.result import AsyncResult
from celery.utils import uuid
from django.db import transaction
from kombu.exceptions import OperationalError
from opentelemetry import context, propagate

from .models import OutboxMessage

logger = logging.getLogger(__name__)

# With the broker's socket timeouts (settings: CELERY_BROKER_TRANSPORT_OPTIONS), one
# immediate retry for a stale pooled connection keeps a hung Redis under ~1.2 s.
PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0}


class KeptResult(AsyncResult):
    """The result of a task that is waiting in the outbox, not yet in the broker."""


class OutboxTask(Task):
    """A task whose `.delay()` and `.apply_async()` go through `enqueue()`: inside a
    transaction the message leaves with its commit; outside one, at once."""

    def apply_async(self, args=None, kwargs=None, task_id=None, **options):  # type: ignore[override]
        task_id = task_id or uuid()
        enqueue(self.name, list(args or ()), task_id, kwargs or {}, options)
        if holds(task_id):  # not committed yet, or the broker could not take it
            return KeptResult(task_id, task_name=self.name, app=self.app)
        return AsyncResult(task_id, task_name=self.name, app=self.app)


# How a message is published, not what it is: the relay publishes with its own.
PUBLISHING_OPTIONS = {"producer", "connection", "retry", "retry_policy"}
# Kept beside the options: the caller's trace context (W3C headers), none untraced.
TRACE = "trace"


def enqueue(
    task: str,
    args: list[Any],
    task_id: str,
    kwargs: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
) -> OutboxMessage:
    """Record the message for the task of this name in the current transaction (with
    Celery's sending options, e.g. `countdown`, `expires`, `serializer`); publish it
    after the commit. A broker that cannot take it leaves it for the relay."""
    kept = {
        name: value
        for name, value in (options or {}).items()
        if name not in PUBLISHING_OPTIONS and name not in ("eta", "countdown", "expires")
    }
    trace: dict[str, str] = {}
    propagate.inject(trace)  # nothing unless this process traces (OpenTelemetry's API)
    if trace:
        kept[TRACE] = trace
    message = OutboxMessage.objects.create(
        task_id=task_id,
        task=task,
        args=args,
        kwargs=kwargs or {},
        options=kept | absolute_times(options or {}),
    )
    transaction.on_commit(lambda: publish(message))
    return message


def absolute_times(options: dict[str, Any]) -> dict[str, str]:
    """expires and countdown count from now, but the message may go out later (the
    relay's): keep them as the moments they stand for."""
    now = datetime.now(UTC)
    kept = {}
    for name, option in (("expires", "expires"), ("eta", "countdown"), ("eta", "eta")):
        value = options.get(option)
        if isinstance(value, int | float):
            value = now + timedelta(seconds=value)
        if value is not None:
            kept[name] = value if isinstance(value, str) else value.isoformat()
    return kept


def whole_seconds(options: dict[str, Any]) -> dict[str, Any]:
    """`options` with any delay (a countdown, or an eta: a moment, or one kept as text)
    as a countdown rounded up to whole seconds; none if the moment has passed.

    Celery's native delayed delivery (RabbitMQ, quorum queues) truncates a countdown to
    whole seconds and refuses one under a second: a retry asked for 0.2 s later was
    rejected and dead-lettered, a relay of a moment less than a second away failed
    (docs/upstream/celery-subsecond-countdown.md; playground/tests/test_rabbitmq.py
    fails once Celery takes them)."""
    eta = options.get("eta")
    countdown = options.get("countdown")
    if eta is not None:
        moment = datetime.fromisoformat(eta) if isinstance(eta, str) else eta
        countdown = (moment - datetime.now(UTC)).total_seconds()
    rounded = {name: value for name, value in options.items() if name not in ("eta", "countdown")}
    if countdown is not None and countdown > 0:
        rounded["countdown"] = math.ceil(countdown)
    return rounded


def publish(message: OutboxMessage) -> bool:
    """Publish one kept message now; whether it left the outbox. It leaves in the same
    transaction that publishes it, so a failed publish keeps it and two relays never
    send it twice."""
    try:
        with transaction.atomic():
            # A relay holding this row is publishing it: on PostgreSQL, skip it rather
            # than wait for that publish (SQLite's IMMEDIATE transactions take turns).
            rows = OutboxMessage.objects.select_for_update(skip_locked=True)
            if not rows.filter(pk=message.pk).values_list("pk"):
                return True  # another relay took it, or is taking it
            OutboxMessage.objects.filter(pk=message.pk).delete()
            options = dict(message.options)
            trace = options.pop(TRACE, None)
            # Published in its caller's trace, whoever publishes it (the relay too).
            token = context.attach(propagate.extract(trace)) if trace else None
            try:
                send(message.task, message.args, message.kwargs, str(message.task_id), **options)
            finally:
                if token is not None:
                    context.detach(token)
    except OperationalError as error:
        logger.warning("Broker unavailable (%s): kept %s in the outbox", error, message)
        return False
    logger.info("Published %s from the outbox", message)
    return True


def send(task: str, args: list[Any], kwargs: dict[str, Any], task_id: str, **options: Any) -> None:
    """Publish a message recorded in the database (from the outbox, or given up and
    replayed) under its own task id; kombu's OperationalError when the broker cannot
    take it."""
    # Nothing waits on the result of a message sent from here: the page follows the
    # notification's rows, and a replayed message is part of no chord any more. Asked
    # for it, the result backend would watch for it, and against a Redis that is away
    # wait out its own long retries (the page hung 10 s and more). By name, whether or
    # not this process imported the task (the web does not).
    options["ignore_result"] = True
    current_app.send_task(
        task,
        args,
        kwargs,
        task_id=task_id,
        retry_policy=PUBLISH_RETRY_POLICY,
        **whole_seconds(options),
    )


def relay() -> int:
    """Publish the kept messages, oldest first, until the broker refuses one; returns
    how many left the outbox."""
    relayed = 0
    for message in OutboxMessage.objects.order_by("id"):
        if not publish(message):
            break
        relayed += 1
    return relayed


def holds(task_id: str) -> bool:
    """Whether a message with this task id waits in the outbox."""
    return OutboxMessage.objects.filter(task_id=task_id).exists()
