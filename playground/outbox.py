"""Sending a task never fails its caller because of the broker: a message Redis
cannot take (down, or hung) is kept in the database and relayed once Redis is back.

Callers keep calling `.delay()` and `.apply_async()` as the course does; the task's
base class does the rest."""

import logging
from datetime import UTC, datetime, timedelta

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
            return super().apply_async(args, kwargs, task_id=task_id, **options)
        except OperationalError as error:
            OutboxMessage.objects.create(
                task_id=task_id,
                task=self.name,
                args=list(args or ()),
                kwargs=kwargs or {},
                options=absolute_times(options),
            )
            logger.warning(
                "Broker unavailable (%s): kept %s[%s] in the outbox", error, self.name, task_id
            )
            return KeptResult(task_id, task_name=self.name, app=self.app)


def absolute_times(options):
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


def relay():
    """Publish the kept messages, oldest first; returns how many. A message leaves
    the outbox in the same transaction that publishes it, so a failed publish keeps
    it and two relays never send it twice."""
    relayed = 0
    for message in OutboxMessage.objects.order_by("id"):
        with transaction.atomic():
            if not OutboxMessage.objects.filter(pk=message.pk).delete()[0]:
                continue  # another relay took it
            current_app.send_task(
                message.task,
                message.args,
                message.kwargs,
                task_id=str(message.task_id),
                **message.options,
            )
        logger.info("Relayed %s from the outbox", message)
        relayed += 1
    return relayed
