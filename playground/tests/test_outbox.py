"""The outbox in this process, against the throwaway Redis and one that is down."""

from contextlib import suppress
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest
from django.db import transaction
from opentelemetry.sdk.trace import TracerProvider

from conftest import queued_tasks
from playground import outbox
from playground.models import OutboxMessage
from playground.tasks import notify_customers

pytestmark = pytest.mark.django_db


@pytest.fixture
def broker_away(broker, redis_server):
    """The broker's Redis stopped for the test (nothing listens on its port), started
    again after."""
    redis_server.stop()
    yield
    redis_server.start()


def test_delay_in_a_transaction_publishes_with_its_commit(
    broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        result = notify_customers.delay("Hello")

        assert isinstance(result, outbox.KeptResult)
        assert OutboxMessage.objects.get().task_id == UUID(result.id)
        assert queued_tasks(broker) == []

    assert queued_tasks(broker) == [(notify_customers.name, ["Hello"])]
    assert not OutboxMessage.objects.exists()


def test_delay_in_a_transaction_rolled_back_sends_nothing(
    broker, django_capture_on_commit_callbacks
):
    with (
        django_capture_on_commit_callbacks(execute=True),
        suppress(LookupError),
        transaction.atomic(),
    ):
        notify_customers.delay("Hello")
        raise LookupError("the rows the message was about are not there")

    assert queued_tasks(broker) == []
    assert not OutboxMessage.objects.exists()


def test_delay_keeps_the_message_in_the_outbox_when_the_broker_is_down(
    broker_away, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        result = notify_customers.apply_async(("Hello",), expires=60, priority=3)

    assert isinstance(result, outbox.KeptResult)
    kept = OutboxMessage.objects.get()
    assert (str(kept.task_id), kept.task, kept.args) == (
        result.id,
        notify_customers.name,
        ["Hello"],
    )
    assert kept.options["priority"] == 3
    assert "T" in kept.options["expires"]  # a moment, not "60 s from whenever"


def test_relay_publishes_each_kept_message_once_under_its_own_task_id(broker):
    kept = OutboxMessage.objects.create(
        task_id="6f1c8a52-0000-4000-8000-000000000001", task=notify_customers.name, args=["Hi"]
    )

    assert outbox.relay() == 1
    assert outbox.relay() == 0
    assert queued_tasks(broker) == [(notify_customers.name, ["Hi"])]
    assert broker.lrange("celery", 0, -1)[0].count(str(kept.task_id).encode()) >= 1
    assert not OutboxMessage.objects.exists()


def test_a_kept_message_keeps_its_expiry_and_countdown_as_moments():
    before = datetime.now(UTC)

    kept = outbox.absolute_times(
        {"expires": 60, "countdown": 5, "queue": "celery", "retry_policy": {}}
    )

    assert set(kept) == {"expires", "eta"}
    expires, eta = (datetime.fromisoformat(kept[name]) for name in ("expires", "eta"))
    assert before + timedelta(seconds=60) <= expires <= datetime.now(UTC) + timedelta(seconds=60)
    assert before + timedelta(seconds=5) <= eta <= datetime.now(UTC) + timedelta(seconds=5)


def test_a_kept_message_keeps_moments_given_as_moments():
    moment = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)

    kept = outbox.absolute_times({"expires": moment, "eta": moment.isoformat()})

    assert kept == {"expires": moment.isoformat(), "eta": moment.isoformat()}


def test_a_delay_goes_out_in_whole_seconds_and_a_moment_passed_goes_out_at_once():
    soon = datetime.now(UTC) + timedelta(seconds=0.3)
    passed = datetime.now(UTC) - timedelta(seconds=1)

    assert outbox.whole_seconds({"countdown": 0.2, "expires": 5}) == {"countdown": 1, "expires": 5}
    assert outbox.whole_seconds({"countdown": 2.5}) == {"countdown": 3}
    assert outbox.whole_seconds({"eta": soon.isoformat()}) == {"countdown": 1}
    assert outbox.whole_seconds({"eta": soon}) == {"countdown": 1}
    assert outbox.whole_seconds({"eta": passed.isoformat(), "countdown": 0}) == {}


def test_a_kept_message_keeps_its_callers_trace_context_and_an_untraced_one_none():
    outbox.enqueue(notify_customers.name, ["Untraced"], "6f1c8a52-0000-4000-8000-000000000031")
    with TracerProvider().get_tracer(__name__).start_as_current_span("the page") as page:
        outbox.enqueue(notify_customers.name, ["Traced"], "6f1c8a52-0000-4000-8000-000000000032")

    untraced, traced = OutboxMessage.objects.order_by("id")
    assert outbox.TRACE not in untraced.options
    _version, trace_id, span_id, _flags = traced.options[outbox.TRACE]["traceparent"].split("-")
    assert (trace_id, span_id) == (
        format(page.get_span_context().trace_id, "032x"),
        format(page.get_span_context().span_id, "016x"),
    )
