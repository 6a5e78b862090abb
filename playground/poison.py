"""Poison messages stop. With late acknowledgement and reject_on_worker_lost (settings),
a message whose task kills the pool process running it (out of memory, a crash in C
code) goes back to Redis and runs again: a task that kills its process every time would
come back forever, and Redis keeps no count of deliveries.

The worker's main process counts them as it hands a message to a pool process. Past
CELERY_TASK_MAX_DELIVERIES it runs it no more: it records it (PoisonMessage, in the
admin), logs one warning with its task id, and fails it as Celery fails a task that
raised Reject(requeue=False), so its result, its chord and its errbacks learn it failed
and the message leaves Redis. `replay()` sends a recorded message again under its own
task id. Every task's messages get this through CELERY_TASK_ANNOTATIONS (settings).

The count lives in Django's cache (Redis in production, so every worker sees it), one
key per message (task id and retry number), with an expiry. A message delivered for the
first time costs nothing: Redis (like any broker) marks a message it gives back as
redelivered, and only those are counted. A message settled (acknowledged, or rejected
for good) forgets its count."""

import functools
import logging
from collections.abc import Callable
from typing import Any

from billiard import einfo
from billiard.einfo import ExceptionInfo
from billiard.exceptions import WorkerLostError
from celery import current_app
from celery.concurrency.base import BasePool
from celery.exceptions import Reject, TaskRevokedError
from celery.worker.request import Request
from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, connection, transaction

from storefront.rabbitmq import dead_letter_queue

from . import outbox
from .models import PoisonMessage

logger = logging.getLogger(__name__)

# Longer than any wait between two deliveries of one message (after a whole worker is
# killed, Redis gives its message back after the visibility timeout: minutes), short
# enough that the count of a message purged from Redis does not stay.
COUNT_EXPIRES = 24 * 3600


def count_key(task_id: str, retries: int) -> str:
    # A retry is a new message under the same task id: it starts its own count.
    return f"poison:{task_id}:{retries}"


def count_redelivery(key: str) -> int:
    """This message's deliveries, counting the one now being handed over (a redelivery)."""
    try:
        return int(cache.incr(key))
    except ValueError:  # no count yet: the delivery before this one was the first
        cache.add(key, 2, COUNT_EXPIRES)
        return 2


def raised(exception: BaseException) -> ExceptionInfo:
    """`exception` with a traceback, as the worker's failure handlers take it."""
    try:
        raise exception
    except BaseException:
        return ExceptionInfo()


class DeliveryCountingRequest(Request):
    """The worker's request for a task message, counting the message's deliveries as
    it is handed to a pool process and giving it up past CELERY_TASK_MAX_DELIVERIES."""

    _counted = False  # this delivery, once: the hand-off may be wrapped twice
    _worker_lost = False  # its pool process died while running it

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # The worker does not run this class but a subclass Celery makes of it for each
        # task (celery.worker.request.create_request_cls), whose own execute_using_pool
        # does not call this one: the count goes around that one too.
        own = vars(cls).get("execute_using_pool")
        if own is not None:
            cls.execute_using_pool = counting(own)  # type: ignore[method-assign]

    def execute_using_pool(self, pool: BasePool, **kwargs: Any) -> Any:
        self.count_delivery()
        return super().execute_using_pool(pool, **kwargs)

    @property
    def key(self) -> str:
        return count_key(self.id, int(self.request_dict.get("retries") or 0))

    def count_delivery(self) -> None:
        """Count this delivery; raise TaskRevokedError (the worker's "not run: free its
        slot") for a message given up, or revoked."""
        if self._counted:
            return
        self._counted = True
        if self.revoked():  # a revoked or expired message is discarded, not counted
            raise TaskRevokedError(self.id)
        if not self.delivery_info.get("redelivered"):
            return
        try:
            deliveries = count_redelivery(self.key)
        except Exception as error:  # the cache is away: run it, as before there was a limit
            logger.warning("Cannot count the deliveries of %s (%r): running it", self, error)
            return
        if deliveries > settings.TASK_MAX_DELIVERIES and self.give_up(deliveries - 1):
            raise TaskRevokedError(self.id)

    def give_up(self, runs: int) -> bool:
        """Record the message, say so, and fail it for good; whether it was given up (a
        message that cannot be recorded is run again instead of being lost)."""
        last_error = self.last_error()
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
        logger.warning(
            "Gave up on %s after %d deliveries that never finished (last: %s): kept as a"
            " poison message, to replay from the admin",
            self.humaninfo(),
            runs,
            last_error or "unknown",
        )
        reason = f"Given up after {runs} deliveries that never finished"
        try:
            self.on_failure(raised(Reject(reason, requeue=False)))
        except Exception:  # the result backend is away: the message still leaves Redis
            logger.exception("Could not record the failure of %s", self.humaninfo())
        self.reject(requeue=False)
        return True

    def last_error(self) -> str:
        try:
            return str(cache.get(f"{self.key}:error") or "")
        except Exception:  # only a detail of the record
            return ""

    def on_failure(
        self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False
    ) -> None:
        exception = exc_info.exception
        # The pool reports an exception wrapped with its traceback (not in billiard's stubs).
        if isinstance(exception, einfo.ExceptionWithTraceback):  # type: ignore[attr-defined]
            exception = exception.exc
        if isinstance(exception, WorkerLostError):
            self._worker_lost = True
            error = f"{type(exception).__name__}: {exception}"
            try:
                cache.set(f"{self.key}:error", error, COUNT_EXPIRES)
            except Exception as cache_error:  # only a detail of the record
                logger.warning("Cannot keep how %s ended (%r)", self.humaninfo(), cache_error)
        super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)

    def acknowledge(self) -> None:
        settled = not self.acknowledged
        super().acknowledge()
        if settled:
            self.forget()

    def reject(self, requeue: bool = False) -> None:
        settled = not self.acknowledged and not requeue
        super().reject(requeue=requeue)
        if settled:
            self.forget()

    def forget(self) -> None:
        """Drop the count of a message that will not come back."""
        if not (self.delivery_info.get("redelivered") or self._worker_lost):
            return  # nothing was counted or kept
        try:
            cache.delete_many([self.key, f"{self.key}:error"])
        except Exception as error:  # it expires
            logger.warning("Cannot forget the deliveries of %s (%r)", self.humaninfo(), error)


def counting(hand_off: Callable[..., Any]) -> Callable[..., Any]:
    """`hand_off` (an execute_using_pool) that counts the delivery first."""

    @functools.wraps(hand_off)
    def execute_using_pool(self: DeliveryCountingRequest, pool: BasePool, **kwargs: Any) -> Any:
        self.count_delivery()
        return hand_off(self, pool, **kwargs)

    return execute_using_pool


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
