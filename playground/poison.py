"""Poison messages stop: a message whose task kills the pool process running it on every
delivery is given up past CELERY_TASK_MAX_DELIVERIES instead of coming back forever
(celery_guarantees.delivery_counting counts the deliveries; every task's messages go
through this request class, named in CELERY_TASK_ANNOTATIONS). A message given up is
recorded here (PoisonMessage, in the admin), and `replay()` sends it again under its
own task id. The count lives in Django's cache (Redis in production, so every worker
sees it)."""

import logging
from typing import Any

from celery import current_app
from celery_guarantees import delivery_counting
from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, connection, transaction

from storefront.rabbitmq import dead_letter_queue

from . import outbox
from .models import PoisonMessage

logger = logging.getLogger(__name__)


class DeliveryCountingRequest(delivery_counting.DeliveryCountingRequest):
    counts = cache

    @property
    def max_deliveries(self) -> int:  # type: ignore[override]
        return settings.TASK_MAX_DELIVERIES

    def keep(self, runs: int, last_error: str) -> bool:
        try:
            with transaction.atomic():
                PoisonMessage.objects.update_or_create(
                    task_id=self.id,
                    defaults={
                        "task": self.type,
                        "args": list(self.args or ()),
                        "kwargs": dict(self.kwargs or {}),
                        "deliveries": runs,
                        "last_error": last_error,
                        "worker": self.hostname,
                    },
                )
        except DatabaseError as error:
            logger.error("Cannot record poison message %s (%r): running it again", self, error)
            return False
        finally:
            # The main process lives for weeks and records rarely: no connection left
            # to go stale, or to be inherited by the pool processes it forks.
            if not connection.in_atomic_block:  # (a test's transaction)
                connection.close()
        return True


def replay(message: PoisonMessage) -> bool:
    """Send a given-up message again, under its own task id, and remove its record; it
    then has CELERY_TASK_MAX_DELIVERIES deliveries again. Whether it was sent (False:
    someone replayed it already). The record leaves in the transaction that publishes
    it: a broker that cannot take it (kombu's OperationalError, raised) keeps the
    record, and two operators replaying it at once send it once."""
    with transaction.atomic():
        if not PoisonMessage.objects.filter(pk=message.pk).delete()[0]:
            return False
        outbox.send(message.task, message.args, message.kwargs, message.task_id)
    logger.info("Replayed poison message %s", message)
    return True


def keep_dead_letters() -> tuple[int, int]:
    """Record each message RabbitMQ dead-lettered past the task queue's delivery limit
    (storefront/rabbitmq.py) as a poison message, for the admin to show and replay, and
    drop each it dead-lettered because it expired (a periodic run not started before the
    next was due: on Redis the worker drops those itself); how many of each. Each leaves
    the dead-letter queue only once handled, and one recorded before is not recorded
    twice: safe to run again, and at any time."""
    kept = dropped = 0
    with current_app.connection_for_write() as connection:
        queue = dead_letter_queue().bind(connection.default_channel)
        while (message := queue.get(no_ack=False)) is not None:
            headers = message.headers
            deaths: Any = headers.get("x-death") or [{}]  # a list of dicts, per RabbitMQ
            reason = deaths[0].get("reason")
            if reason == "expired":
                message.ack()
                dropped += 1
                continue
            args, kwargs, _embed = message.decode()
            PoisonMessage.objects.get_or_create(
                task_id=headers["id"],
                defaults={
                    "task": headers["task"],
                    "args": list(args),
                    "kwargs": dict(kwargs),
                    "deliveries": int(headers.get("x-delivery-count") or 0),
                    "last_error": f"Dead-lettered by RabbitMQ ({reason})",
                },
            )
            message.ack()
            kept += 1
    return kept, dropped
