"""The notification's rules (playground/services.py), in process: the database is
the test database, mail goes to a stand-in connection, nothing is published."""

import smtplib
import uuid
from datetime import timedelta
from unittest import mock

import pytest
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend
from django.core.mail.backends.smtp import EmailBackend as SMTPBackend
from django.utils import timezone
from kombu.exceptions import OperationalError

from playground import outbox, services
from playground.mailing import Mailing
from playground.models import Delivery, Notification, OutboxMessage

pytestmark = pytest.mark.django_db

FIRST = uuid.UUID("6f1c8a52-0000-4000-8000-000000000101")
SECOND = uuid.UUID("6f1c8a52-0000-4000-8000-000000000102")


class RefusingConnection(EmailBackend):
    """Django's in-memory mail backend, refusing some addresses as a server would."""

    def __init__(self, refusals=None, **kwargs):
        super().__init__(**kwargs)
        self.refusals = refusals or {}  # address -> (SMTP code, reason)

    def send_messages(self, messages):
        for message in messages:
            refused = {to: self.refusals[to] for to in message.to if to in self.refusals}
            if refused:
                raise smtplib.SMTPRecipientsRefused(refused)
        return super().send_messages(messages)


def test_only_active_users_with_an_email_are_customers(django_user_model, customers):
    django_user_model.objects.create(username="inactive", email="x@example.com", is_active=False)
    django_user_model.objects.create(username="no-email", email="")

    assert list(services.customers().order_by("id")) == customers


def test_a_second_notification_is_refused_while_one_is_active_and_welcome_after():
    first = services.claim(FIRST, "First")

    assert services.claim(SECOND, "Second") is None
    assert services.claim(FIRST, "First") == first  # the same task, redelivered
    services.finish(FIRST)
    assert services.claim(SECOND, "Second") is not None


@pytest.fixture
def broker():
    """The publishing end of the outbox, replaced: what it was asked to send."""
    with mock.patch.object(outbox, "current_app") as app:
        yield app.send_task


@pytest.mark.django_db(transaction=True)  # real commits: the message goes out after each
def test_the_page_starts_one_notification_and_then_shows_it(broker):
    started, kept = services.show_or_start("Hello")
    shown, _ = services.show_or_start("Hello")

    assert shown == started
    assert not kept
    assert broker.call_count == 1
    assert broker.call_args.args[:2] == ("playground.tasks.notify_customers", ["Hello"])
    assert broker.call_args.kwargs["task_id"] == str(started.id)
    assert not OutboxMessage.objects.exists()


def test_a_notification_and_its_message_are_recorded_together_and_sent_after_the_commit(
    broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as after_commit:
        started, _ = services.show_or_start("Hello")

    # Here the process may die: the message is in the outbox, with the notification.
    assert broker.call_count == 0
    assert OutboxMessage.objects.get().task_id == started.id
    assert len(after_commit) == 1
    assert outbox.relay() == 1  # what Beat's relay_outbox does with what a crash left
    assert broker.call_args.kwargs["task_id"] == str(started.id)


@pytest.mark.django_db(transaction=True)
def test_a_message_the_broker_refuses_waits_in_the_outbox(broker):
    broker.side_effect = OperationalError("Connection refused")

    started, kept = services.show_or_start("Hello")

    assert kept
    assert OutboxMessage.objects.get().task_id == started.id


def test_the_page_shows_a_notification_started_elsewhere_without_starting_another(broker):
    running = services.claim(FIRST, "From Beat")

    shown, _ = services.show_or_start("Hello")

    assert shown == running
    assert not OutboxMessage.objects.exists()


def test_begin_counts_the_customers_and_splits_them_into_batches(customers):
    notification = services.claim(FIRST, "Hi")

    batches = services.begin(notification, batch_size=2)

    ids = [c.id for c in customers]
    assert batches == [ids[0:2], ids[2:4], ids[4:5]]
    notification.refresh_from_db()
    assert (notification.status, notification.total) == ("running", 5)


def test_a_batch_sends_once_to_each_customer_not_yet_reached(customers):
    notification = services.claim(FIRST, "Hi")
    ids = [c.id for c in customers]
    services.record(notification, customers[:2], Delivery.Status.SENT)

    services.email_customers(notification, ids, RefusingConnection())
    services.email_customers(notification, ids, RefusingConnection())  # run again: nothing more

    assert sorted(m.to[0] for m in mail.outbox) == [f"c{n}@example.com" for n in (2, 3, 4)]
    message_id = f"<{notification.id}.{customers[2].id}@storefront>"
    assert mail.outbox[0].message()["Message-ID"] == message_id
    assert services.progress(notification)["sent"] == 5


def test_a_permanent_refusal_fails_that_customer_and_the_others_still_get_it(customers):
    notification = services.claim(FIRST, "Hi")
    connection = RefusingConnection({"c1@example.com": (550, b"No such mailbox")})

    services.email_customers(notification, [c.id for c in customers], connection)

    failed = Delivery.objects.get(status="failed")
    assert (failed.customer, failed.error) == (customers[1], "550 b'No such mailbox'")
    assert len(mail.outbox) == 4


def test_a_temporary_refusal_is_raised_for_the_batch_to_retry_and_records_nothing(customers):
    notification = services.claim(FIRST, "Hi")
    connection = RefusingConnection({"c0@example.com": (451, b"Try again later")})

    with pytest.raises(smtplib.SMTPRecipientsRefused):
        services.email_customers(notification, [c.id for c in customers], connection)

    assert not Delivery.objects.exists()


def test_giving_up_fails_only_the_customers_not_reached(customers):
    notification = services.claim(FIRST, "Hi")
    services.record(notification, customers[:3], Delivery.Status.SENT)

    assert services.give_up(notification, [c.id for c in customers], "timed out") == 2
    assert services.progress(notification) | {"id": None} == {
        "id": None,
        "message": "Hi",
        "status": "queued",
        "total": 0,
        "sent": 3,
        "failed": 2,
        "unknown": 0,
        "done": False,
        "reason": "",
    }


def test_finishing_twice_reports_once_and_frees_the_way_for_the_next():
    services.claim(FIRST, "Hi")

    first, second = services.finish(FIRST), services.finish(FIRST)

    assert first is not None
    assert first["done"]
    assert second is None
    assert not Notification.objects.filter(active=True).exists()


@pytest.mark.parametrize("notification_id", [str(SECOND), "not-a-uuid"])
def test_the_progress_of_an_unknown_or_malformed_id_is_none(notification_id):
    assert services.progress_of(notification_id) is None


def quiet_for(notification, seconds):
    """As if nothing had happened to the notification for that long."""
    long_ago = timezone.now() - timedelta(seconds=seconds)
    Notification.objects.filter(id=notification.id).update(created_at=long_ago)
    notification.deliveries.update(at=long_ago)


def test_a_notification_whose_work_is_gone_is_finished_with_the_reason(customers):
    stuck = services.claim(FIRST, "Hi")
    services.record(stuck, customers[:2], Delivery.Status.SENT)
    quiet_for(stuck, 120)

    reaped = services.reap(stale_after=60, in_flight=set(), as_of=timezone.now())

    assert reaped == [stuck]
    stuck.refresh_from_db()
    assert stuck.status == "done"
    assert stuck.reason.startswith("No progress for 120 s")
    assert services.progress(stuck)["sent"] == 2
    assert services.claim(SECOND, "Next") is not None  # the way is free


def test_a_notification_is_not_reaped_while_it_shows_life_or_its_work_is_somewhere(customers):
    recent = services.claim(FIRST, "Hi")
    quiet_for(recent, 120)
    services.record(recent, customers[:1], Delivery.Status.SENT)  # a delivery just now
    assert services.reap(stale_after=60, in_flight=set(), as_of=timezone.now()) == []

    quiet_for(recent, 120)
    held_by_a_worker = {str(FIRST)}
    assert services.reap(stale_after=60, in_flight=held_by_a_worker, as_of=timezone.now()) == []

    # Waiting in the outbox for the broker.
    OutboxMessage.objects.create(task_id=FIRST, task="playground.tasks.notify_customers")
    assert services.reap(stale_after=60, in_flight=set(), as_of=timezone.now()) == []


def test_a_notification_that_showed_life_after_the_workers_were_asked_is_not_reaped(customers):
    started = services.claim(FIRST, "Hi")
    quiet_for(started, 70)  # quiet for longer than 60 s by now...
    asked = timezone.now() - timedelta(seconds=80)  # ...but the workers were asked before

    assert services.reap(stale_after=60, in_flight=set(), as_of=asked) == []


def test_purging_deletes_what_finished_long_ago_and_keeps_the_rest(customers):
    old, recent = services.claim(FIRST, "Old"), None
    services.record(old, customers, Delivery.Status.SENT)
    services.finish(FIRST)
    Notification.objects.filter(id=FIRST).update(finished_at=timezone.now() - timedelta(days=31))
    recent = services.claim(SECOND, "Recent")  # active: kept however old
    Notification.objects.filter(id=SECOND).update(created_at=timezone.now() - timedelta(days=90))

    assert services.purge(older_than_days=30) == 1
    assert list(Notification.objects.all()) == [recent]
    assert not Delivery.objects.exists()


# --- Exactly once, in numbers: the intent before the handover, the outcome after ---


class ScriptedSMTP(smtplib.SMTP):
    """smtplib's client, with the server's answers played in memory; it notes what the
    database held as each message was handed over (SMTP's DATA)."""

    def __init__(self, rcpt=(250, b"OK"), data=(250, b"OK"), lost_in_data=False):
        super().__init__()  # no host: no connection
        self.rcpt_answer, self.data_answer, self.lost_in_data = rcpt, data, lost_in_data
        self.at_handover = []  # the delivery statuses as each DATA began
        self.resets = 0

    def ehlo_or_helo_if_needed(self):
        pass

    def mail(self, sender, options=()):
        return 250, b"OK"

    def rcpt(self, recipient, options=()):
        return self.rcpt_answer

    def data(self, msg):
        self.at_handover.append(sorted(Delivery.objects.values_list("status", flat=True)))
        if self.lost_in_data:  # killed, or the network gone, before the server's answer
            raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
        return self.data_answer

    def rset(self):
        self.resets += 1
        return 250, b"OK"


def smtp_connection(server):
    """Django's SMTP backend, as the tasks use it, talking to a scripted server."""
    backend = SMTPBackend()
    backend.connection = server
    return backend


def statuses():
    return sorted(Delivery.objects.values_list("status", flat=True))


def test_the_intent_is_recorded_as_the_message_is_handed_over_and_the_outcome_after(customers):
    notification = services.claim(FIRST, "Hi")
    server = ScriptedSMTP()

    services.deliver(Mailing(notification, smtp_connection(server)), customers[0])

    assert server.at_handover == [["sending"]]
    assert statuses() == ["sent"]


def test_a_connection_that_is_not_smtp_records_the_intent_as_sending_starts(customers):
    notification = services.claim(FIRST, "Hi")
    seen = []

    class Watching(RefusingConnection):
        def send_messages(self, messages):
            seen.append(statuses())
            return super().send_messages(messages)

    services.deliver(Mailing(notification, Watching()), customers[0])

    assert seen == [["sending"]]
    assert statuses() == ["sent"]


# A provider's "slow down" (421, or 4.7.x: over its cap) is temporary as any 4xx: the
# batch retries with its backoff (tasks.send_batch).
SLOW_DOWN = [(421, b"4.7.0 Too many messages, slow down"), (450, b"4.7.1 Rate limit exceeded")]


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [((550, b"No such mailbox"), ["failed"]), ((451, b"Later"), []), *((a, []) for a in SLOW_DOWN)],
)
def test_a_recipient_refused_before_the_handover_never_has_an_intent(customers, answer, outcome):
    notification = services.claim(FIRST, "Hi")
    server = ScriptedSMTP(rcpt=answer)

    if answer[0] < 500:
        with pytest.raises(smtplib.SMTPRecipientsRefused):  # the batch retries
            services.deliver(Mailing(notification, smtp_connection(server)), customers[0])
    else:
        services.deliver(Mailing(notification, smtp_connection(server)), customers[0])

    assert server.at_handover == []
    assert statuses() == outcome


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [((554, b"Rejected"), ["failed"]), ((452, b"Mailbox full"), []), *((a, []) for a in SLOW_DOWN)],
)
def test_a_message_the_server_answers_with_a_refusal_is_known_not_sent(customers, answer, outcome):
    notification = services.claim(FIRST, "Hi")
    server = ScriptedSMTP(data=answer)

    if answer[0] < 500:
        with pytest.raises(smtplib.SMTPDataError):  # the batch retries: it is sent again
            services.deliver(Mailing(notification, smtp_connection(server)), customers[0])
    else:
        services.deliver(Mailing(notification, smtp_connection(server)), customers[0])

    assert server.at_handover == [["sending"]]
    assert statuses() == outcome


def test_a_message_whose_answer_never_came_is_not_sent_again_and_is_reported_unknown(customers):
    notification = services.claim(FIRST, "Hi")
    services.begin(notification, batch_size=5)
    ids = [c.id for c in customers]

    with pytest.raises(smtplib.SMTPServerDisconnected):  # the batch retries
        services.email_customers(
            notification, ids, smtp_connection(ScriptedSMTP(lost_in_data=True))
        )
    services.email_customers(notification, ids, RefusingConnection())  # the retry

    assert sorted(m.to[0] for m in mail.outbox) == [f"c{n}@example.com" for n in (1, 2, 3, 4)]
    running = services.progress(notification)
    assert (running["sent"], running["unknown"]) == (4, 0)  # still in flight, as far as known
    final = services.finish(FIRST)
    assert (final["sent"], final["failed"], final["unknown"], final["total"]) == (4, 0, 1, 5)
    assert Delivery.objects.get(status="unknown").customer == customers[0]


def test_a_rerun_skips_a_customer_a_killed_worker_left_sending_and_finishing_reports_them(
    customers,
):
    notification = services.claim(FIRST, "Hi")
    services.begin(notification, batch_size=5)
    # The intent, as a worker killed mid-send leaves it.
    Delivery.objects.create(notification=notification, customer=customers[2], status="sending")

    services.email_customers(notification, [c.id for c in customers], RefusingConnection())

    assert "c2@example.com" not in {m.to[0] for m in mail.outbox}
    assert len(mail.outbox) == 4
    progress = services.finish(FIRST)
    assert progress["sent"] + progress["failed"] + progress["unknown"] == progress["total"] == 5
    assert progress["unknown"] == 1
    assert services.finish(FIRST) is None  # finishing again changes nothing


def test_a_reaped_notification_reports_its_unknowns_too(customers):
    stuck = services.claim(FIRST, "Hi")
    Delivery.objects.create(notification=stuck, customer=customers[0], status="sending")
    quiet_for(stuck, 120)

    assert services.reap(stale_after=60, in_flight=set(), as_of=timezone.now()) == [stuck]
    assert services.progress(stuck)["unknown"] == 1


@pytest.mark.django_db(transaction=True)  # autocommit, as in a worker
def test_a_customer_another_run_is_sending_to_is_left_to_it(customers):
    notification = services.claim(FIRST, "Hi")
    Delivery.objects.create(notification=notification, customer=customers[0], status="sending")
    server = ScriptedSMTP()
    connection = smtp_connection(server)

    mailing = Mailing(notification, connection)
    services.deliver(mailing, customers[0])
    services.deliver(mailing, customers[1])  # the connection still serves

    assert server.at_handover == [["sending", "sending"]]  # only customers[1]'s message
    assert server.resets == 1  # the first transaction was abandoned before DATA
    assert statuses() == ["sending", "sent"]
