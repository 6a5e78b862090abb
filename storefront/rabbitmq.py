"""What RabbitMQ does better than Redis, when CELERY_BROKER_URL is amqp:// (settings).

Each task queue is a quorum queue: replicated on a majority of the cluster's nodes,
it gives a message back the moment the connection of the worker holding it drops (no
visibility timeout to wait out), and it counts deliveries. A message delivered more
than CELERY_TASK_MAX_DELIVERIES times without being settled is dead-lettered to
DEAD_LETTER_QUEUE instead of being delivered again: the backstop behind the worker's
own count (playground/poison.py), for when the cache that keeps that count is away."""

from typing import Any

from kombu import Exchange, Queue

DEAD_LETTER_QUEUE = "celery.dead"


def task_queues(names: list[str], max_deliveries: int) -> list[Queue]:
    """The queues of these names (the first is Celery's default queue), on one exchange."""
    # A topic exchange: Celery's native delayed delivery, which keeps countdowns in
    # RabbitMQ instead of in a worker's memory, binds only to those.
    exchange = Exchange(names[0], type="topic")
    arguments: dict[str, object] = {
        "x-queue-type": "quorum",
        # The default exchange routes by queue name.
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": DEAD_LETTER_QUEUE,
        # A message leaves for the dead-letter queue only once that queue has it
        # (RabbitMQ's default drops it if the hand-over fails); this strategy needs
        # reject-publish as the overflow rule.
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }
    if max_deliveries:  # 0: RabbitMQ's own default
        arguments["x-delivery-limit"] = max_deliveries
    return [Queue(name, exchange, routing_key=name, queue_arguments=arguments) for name in names]


def dead_letter_queue() -> Queue:
    return Queue(DEAD_LETTER_QUEUE, queue_arguments={"x-queue-type": "quorum"})


def declare_dead_letter_queue(sender: Any, **kwargs: Any) -> None:
    """Each worker declares it as it starts (storefront/celery.py connects this to
    worker_ready): RabbitMQ drops what it dead-letters to a queue that does not exist.
    Workers do not consume it: an operator inspects and replays it (docs/reliability.md,
    *When things fail*)."""
    if not sender.app.conf.broker_url.startswith(("amqp", "pyamqp")):
        return
    with sender.app.connection_for_write() as connection:
        dead_letter_queue()(connection.default_channel).declare()
