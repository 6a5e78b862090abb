"""The worker publishes its task events (task-received, -started, -succeeded...) in
batches, at most TASK_EVENTS_FLUSH_SECONDS after they happen: Flower still shows every
task, that much later.

Celery buffers task events in the worker already, but flushes the buffer on the next
turn of its event loop: with one message in hand at a time that is one PUBLISH, a round
trip to the broker, per event; three per task, in the chain from one task to the next.
They were the largest part of a short task's cost (docs/measured.md;
docs/upstream/celery-task-events-one-publish-each.md). This consumer
step (Celery's extension point for the worker's consumer) defers the flush instead;
Celery's own buffer limit (24 events) still flushes a full buffer at once, and the step
flushes what is left whenever the consumer stops or restarts."""

from celery import bootsteps
from celery.worker.consumer.events import Events
from django.conf import settings


def publish_in_batches(app):
    app.steps["consumer"].add(BatchedTaskEvents)


class BatchedTaskEvents(bootsteps.StartStopStep):
    requires = (Events,)  # started after the dispatcher exists, stopped before it closes

    def __init__(self, consumer, **kwargs):
        super().__init__(consumer, **kwargs)
        self.flush_due = False
        self.interval = settings.TASK_EVENTS_FLUSH_SECONDS

    def start(self, consumer):
        # Started again after a lost connection, with a new dispatcher; Celery cancelled
        # the timer entries of the lost one, a flush scheduled then among them.
        self.flush_due = False
        dispatcher = consumer.event_dispatcher
        if dispatcher and dispatcher.buffer_group:  # Celery buffers only under its event loop
            dispatcher.on_send_buffered = lambda: self.flush_later(consumer)

    def flush_later(self, consumer):
        if not self.flush_due:
            self.flush_due = True
            consumer.hub.call_later(self.interval, self.flush, consumer)

    def flush(self, consumer):
        self.flush_due = False
        if consumer.event_dispatcher:
            consumer.event_dispatcher.flush()

    def stop(self, consumer):
        self.flush(consumer)

    shutdown = stop
