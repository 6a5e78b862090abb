"""Poison messages stop. With late acknowledgement and reject_on_worker_lost, a message
whose task kills the pool process running it (out of memory, a crash in C code) goes
back to the broker and runs again: a task that kills its process every time would come
back forever, and Redis keeps no count of deliveries.

The worker's main process counts them as it hands a message to a pool process, with
`DeliveryCountingRequest` (subclass it, then name the subclass as every task's Request,
e.g. `task_annotations = {"*": {"Request": "myproject.poison:Request"}}`). Past
`max_deliveries` it runs it no more: `keep()` (yours) records it, one warning is logged
with its task id, and it is failed as Celery fails a task that raised
Reject(requeue=False), so its result, its chord and its errbacks learn it failed and the
message leaves the broker.

The count lives in `counts`, a cache every worker shares (Django's cache API: incr, add,
get, set, delete_many), one key per message (task id and retry number), with an expiry. A
message delivered for the first time costs nothing: the broker marks a message it gives
back as redelivered, and only those are counted. A message settled (acknowledged, or
rejected for good) forgets its count."""

import functools
import logging
from collections.abc import Callable
from typing import Any, Protocol

from billiard import einfo
from billiard.einfo import ExceptionInfo
from billiard.exceptions import WorkerLostError
from celery.concurrency.base import BasePool
from celery.exceptions import Reject, TaskRevokedError
from celery.worker.request import Request

logger = logging.getLogger(__name__)


class Counts(Protocol):
    """What the count needs of a cache (Django's cache has it)."""

    def incr(self, key: str) -> int: ...
    def add(self, key: str, value: Any, timeout: float) -> bool: ...
    def get(self, key: str) -> Any: ...
    def set(self, key: str, value: Any, timeout: float) -> None: ...
    def delete_many(self, keys: list[str]) -> None: ...


def count_key(task_id: str, retries: int) -> str:
    # A retry is a new message under the same task id: it starts its own count.
    return f"poison:{task_id}:{retries}"


def raised(exception: BaseException) -> ExceptionInfo:
    """`exception` with a traceback, as the worker's failure handlers take it."""
    try:
        raise exception
    except BaseException:
        return ExceptionInfo()


class DeliveryCountingRequest(Request):
    """The worker's request for a task message, counting the message's deliveries as
    it is handed to a pool process and giving it up past `max_deliveries`."""

    counts: Counts
    max_deliveries: int
    # Longer than any wait between two deliveries of one message (after a whole worker is
    # killed, Redis gives its message back after the visibility timeout: minutes), short
    # enough that the count of a message purged from the broker does not stay.
    count_expires = 24 * 3600

    _counted = False  # this delivery, once: the hand-off may be wrapped twice
    _worker_lost = False  # its pool process died while running it

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # The worker does not run this class but a subclass Celery makes of it for each
        # task (celery.worker.request.create_request_cls), whose own execute_using_pool
        # does not call this one: the count goes around that one too. Upstream, Celery
        # would call this one (patches/celery-5.7.0-custom-request-execute-using-pool.patch,
        # docs/celery-poison-messages-come-back-forever.md), and this wrap could go.
        own = vars(cls).get("execute_using_pool")
        if own is not None:
            cls.execute_using_pool = counting(own)  # type: ignore[method-assign]

    def keep(self, runs: int, last_error: str) -> bool:
        """Record the message given up where an operator finds it (to replay); whether
        it was recorded (False: it runs again rather than being lost)."""
        raise NotImplementedError

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
            deliveries = self.count_redelivery()
        except Exception as error:  # the cache is away: run it, as before there was a limit
            logger.warning("Cannot count the deliveries of %s (%r): running it", self, error)
            return
        if deliveries > self.max_deliveries and self.give_up(deliveries - 1):
            raise TaskRevokedError(self.id)

    def count_redelivery(self) -> int:
        """This message's deliveries, counting the one now being handed over (a redelivery)."""
        try:
            return int(self.counts.incr(self.key))
        except ValueError:  # no count yet: the delivery before this one was the first
            self.counts.add(self.key, 2, self.count_expires)
            return 2

    def give_up(self, runs: int) -> bool:
        """Record the message, say so, and fail it for good; whether it was given up."""
        last_error = self.last_error()
        if not self.keep(runs, last_error):
            return False
        logger.warning(
            "Gave up on %s after %d deliveries that never finished (last: %s): kept as a"
            " poison message, to replay",
            self.humaninfo(),
            runs,
            last_error or "unknown",
        )
        reason = f"Given up after {runs} deliveries that never finished"
        try:
            self.on_failure(raised(Reject(reason, requeue=False)))
        except Exception:  # the result backend is away: the message still leaves
            logger.exception("Could not record the failure of %s", self.humaninfo())
        self.reject(requeue=False)
        return True

    def last_error(self) -> str:
        try:
            return str(self.counts.get(f"{self.key}:error") or "")
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
                self.counts.set(f"{self.key}:error", error, self.count_expires)
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
            self.counts.delete_many([self.key, f"{self.key}:error"])
        except Exception as error:  # it expires
            logger.warning("Cannot forget the deliveries of %s (%r)", self.humaninfo(), error)


def counting(hand_off: Callable[..., Any]) -> Callable[..., Any]:
    """`hand_off` (an execute_using_pool) that counts the delivery first."""

    @functools.wraps(hand_off)
    def execute_using_pool(self: DeliveryCountingRequest, pool: BasePool, **kwargs: Any) -> Any:
        self.count_delivery()
        return hand_off(self, pool, **kwargs)

    return execute_using_pool
