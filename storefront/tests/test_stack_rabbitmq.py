"""docker-compose.yml with the rabbitmq profile, as .env.example says to turn it on: the
course's `celery call` sends a notification through the stack's RabbitMQ, and
`down -v` leaves nothing of the stack behind (make test-compose)."""

import secrets

import pytest

from conftest import wait_until

# The first test's setup builds the images and brings the stack up.
pytestmark = pytest.mark.timeout(600)


def test_with_the_rabbitmq_profile_a_notification_goes_through_rabbitmq_and_down_leaves_nothing(
    start_stack, stack_inbox
):
    password = secrets.token_urlsafe(16)
    stack = start_stack(
        COMPOSE_PROFILES="rabbitmq",
        RABBITMQ_PASSWORD=password,
        CELERY_BROKER_URL=f"amqp://storefront:{password}@rabbitmq:5672/",
    )
    stack.exec("web", "python", "manage.py", "seed_customers", "2")

    stack.exec("celery", "celery", "-A", "storefront", "call", "playground.tasks.notify_customers",
               "--args", '["Hello"]')  # fmt: skip

    wait_until(lambda: len(stack_inbox.messages) >= 2, 60, "2 emails")
    assert sorted(m["To"] for m in stack_inbox.messages) == [
        "customer0@example.com", "customer1@example.com"
    ]  # fmt: skip
    queues = stack.exec("rabbitmq", "rabbitmqctl", "list_queues", "-q", "name").split()
    assert "celery" in queues  # the workers' task queue is there

    def left():  # the stack's containers, volumes and network
        return [stack.podman_names(*listing) for listing in (["ps", "-a"], ["volume", "ls"],
                                                             ["network", "ls"])]  # fmt: skip

    assert all(left())
    stack.down()
    assert left() == [[], [], []]
