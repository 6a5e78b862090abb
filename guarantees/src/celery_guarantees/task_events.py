"""The worker publishes its task events (task-received, -started, -succeeded...) in
batches, at most `every()` seconds after they happen: Flower still shows every task,
that much later.

Celery buffers task events in the worker already, but flushes the buffer on the next
turn of its event loop: with one message in hand at a time that is one PUBLISH, a round
trip to the broker, per event; three per task, in the chain from one task to the next.
They were the largest part of a short task's cost (README, *What it costs*;
docs/celery-task-events-one-publish-each.md). This consumer step (Celery's extension
point for the worker's consumer) defers the flush instead; Celery's own buffer limit
(24 events) still flushes a full buffer at once, and the step flushes what is left
whenever the consumer stops or restarts. Upstream, the same as a setting:
patches/celery-5.7.0-task-events-flush-interval.patch."""

from collections.abc import Callable
from typing import Any

from celery import Celery, bootsteps
from celery.worker.consumer.events import Events


def publish_in_batches(app: Celery, every: Callable[[], float]) -> None:
    """Have `app`'s workers publish their task events in batches; `every` is read as a
    worker starts (a setting, read then rather than at import)."""

    class BatchedTaskEvents(bootsteps.StartStopStep):
        requires = (Events,)  # started after the dispatcher exists, stopped before it closes

        def __init__(self, consumer: Any, **kwargs: Any) -> None:
            super().__init__(consumer, **kwargs)
            self.flush_due = False
            self.interval = every()

        def start(self, consumer: Any) -> None:
            # Started again after a lost connection, with a new dispatcher; Celery
            # cancelled the timer entries of the lost one, a flush scheduled then among them.
            self.flush_due = False
            dispatcher = consumer.event_dispatcher
            if dispatcher and dispatcher.buffer_group:  # Celery buffers only under its loop
                dispatcher.on_send_buffered = lambda: self.flush_later(consumer)

        def flush_later(self, consumer: Any) -> None:
            if not self.flush_due:
                self.flush_due = True
                consumer.hub.call_later(self.interval, self.flush, consumer)

        def flush(self, consumer: Any) -> None:
            self.flush_due = False
            if consumer.event_dispatcher:
                consumer.event_dispatcher.flush()

        def stop(self, consumer: Any) -> None:
            self.flush(consumer)

        shutdown = stop

    app.steps["consumer"].add(BatchedTaskEvents)
