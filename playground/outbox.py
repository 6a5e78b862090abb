"""Sending a task never fails its caller because of the broker, and never gets lost
between the database and the broker.

- `enqueue()` is the transactional outbox: the message is written in the caller's
  transaction (with the rows it belongs to) and published once that commits. A process
  killed in between leaves the row, and Beat's relay_outbox publishes it.
- Tasks whose base class is OutboxTask may be sent with `.delay()` and
  `.apply_async()` as the course does: a message the broker cannot take (down, or hung)
  is kept in the same table.

Either way a kept message keeps its task id, so a task can tell a relayed message from
a new one."""

import logging
import math
from datetime import UTC, datetime, timedelta
from typing import Any

from celery import Task, current_app
from celery.result import AsyncResult
from celery.utils import uuid
from django.db import transaction
from kombu.exceptions import OperationalError

from .models import OutboxMessage

logger = logging.getLogger(__name__)

# With the broker's socket timeouts (settings: CELERY_BROKER_TRANSPORT_OPTIONS), one
# immediate retry for a stale pooled connection keeps a hung Redis under ~1.2 s.
PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0}


class KeptResult(AsyncResult):
    """The result of a task that is waiting in the outbox, not yet in the broker."""


class OutboxTask(Task):
    # The same call as Task.apply_async; the options are passed on as they came.
    def apply_async(self, args=None, kwargs=None, task_id=None, **options):  # type: ignore[override]
        task_id = task_id or uuid()
        options.setdefault("retry_policy", PUBLISH_RETRY_POLICY)
        try:
            return super().apply_async(args, kwargs, task_id=task_id, **whole_seconds(options))
        except OperationalError as error:
            keep(self.name, task_id, list(args or ()), kwargs or {}, options, error)
            return KeptResult(task_id, task_name=self.name, app=self.app)


def keep(
    task: str,
    task_id: str,
    args: list[Any],
    kwargs: dict[str, Any],
    options: dict[str, Any],
    error: Exception,
) -> OutboxMessage:
    message = OutboxMessage.objects.create(
        task_id=task_id, task=task, args=args, kwargs=kwargs, options=absolute_times(options)
    )
    logger.warning("Broker unavailable (%s): kept %s in the outbox", error, message)
    return message


def enqueue(task: str, args: list[Any], task_id: str) -> OutboxMessage:
    """Record the message for the task of this name in the current transaction; publish
    it after the commit (a broker that is away leaves it for the relay). Call it inside
    transaction.atomic() with the rows the message is about."""
    message = OutboxMessage.objects.create(task_id=task_id, task=task, args=args)
    transaction.on_commit(lambda: publish(message))
    return message


def absolute_times(options: dict[str, Any]) -> dict[str, str]:
    """expires and countdown count from now, but the relay sends later: keep them as
    the moments they stand for."""
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
    (docs/upstream/celery-subsecond-countdown.md; playground/tests/test_outbox.py
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
            task_id = str(message.task_id)
            send(message.task, message.args, message.kwargs, task_id, **message.options)
    except OperationalError as error:
        logger.warning("Broker unavailable (%s): kept %s in the outbox", error, message)
        return False
    logger.info("Published %s from the outbox", message)
    return True


def send(task: str, args: list[Any], kwargs: dict[str, Any], task_id: str, **options: Any) -> None:
    """Publish a message recorded in the database (kept, or given up and replayed) under
    its own task id; kombu's OperationalError when the broker cannot take it."""
    current_app.send_task(
        task,
        args,
        kwargs,
        task_id=task_id,
        retry_policy=PUBLISH_RETRY_POLICY,
        # Nothing waits on the result of a message sent from here: the page follows the
        # notification's rows, and a replayed message is part of no chord any more.
        # Asked for it, the result backend would watch for it, and against a Redis that
        # is away wait out its own long retries (the page hung 10 s and more). By name,
        # whether or not this process imported the task (the web does not).
        ignore_result=True,
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
