"""A worker's main process in a test's own process, for the delivery counting's tests
(the package's and a project's): Celery's own strategy for a task (it builds each
request from the task's Request class) and Celery's own hand-off to the pool
(WorkController._process_task), over a pool that only records what it is handed. A test
built on it fails loudly when a new Celery stops going through what the count wraps."""

from typing import Any
from unittest.mock import MagicMock, Mock

from billiard.exceptions import WorkerLostError
from celery import Celery, Task
from celery.contrib.testing.mocks import TaskMessage
from celery.worker.request import Request
from celery.worker.worker import WorkController

from ..delivery_counting import raised

KILLED = "Worker exited prematurely: signal 9 (SIGKILL) Job: 1."


class Worker:
    def __init__(self, app: Celery, task: Task) -> None:
        self.consumer = MagicMock(
            hostname="tester@localhost", connection_errors=(), disable_rate_limits=True
        )
        self.consumer.event_dispatcher.enabled = False
        self.pool = self.consumer.pool
        self.on_message = task.start_strategy(app, self.consumer)
        self.task = task
        self.freed = 0  # pool slots given back without running anything

    def _quick_release(self) -> None:  # WorkController's: a slot freed
        self.freed += 1

    def deliver(
        self, task_id: str, args: Any = ("n", [1]), redelivered: bool = True, retries: int = 0
    ) -> tuple[Request, Mock, Mock]:
        """Deliver a message of the task and hand it to the pool as the worker does;
        returns the request and the message's (ack, reject) callbacks."""
        message = TaskMessage(self.task.name, id=task_id, args=list(args), retries=retries)
        message.delivery_info = {"redelivered": redelivered}
        message.properties = {}
        ack, reject = Mock(), Mock()
        self.on_message(message, None, ack, reject, [])
        request = self.consumer.on_task_request.call_args.args[0]
        WorkController._process_task(self, request)  # type: ignore[attr-defined]
        return request, ack, reject

    def handed_to_pool(self) -> int:
        return int(self.pool.apply_async.call_count)


def kill(request: Request) -> None:
    """What the main process sees when the pool process running `request` is killed."""
    request.on_failure(raised(WorkerLostError(KILLED)))


def requeued(reject: Mock) -> bool:
    """Whether the message was rejected once, back to its queue."""
    return [call.args[2] for call in reject.call_args_list] == [True]
