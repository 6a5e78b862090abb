"""The notification's life, in one place: whom it goes to, starting one (at most one
is active at a time, whoever asks), sending it to a batch of customers and recording
each delivery, finishing it, and its progress.

Views and tasks are interfaces to these rules: they translate a request or a Celery
message into a call here, and back."""

import smtplib
import uuid
from collections.abc import Collection, Iterable
from datetime import datetime, timedelta
from typing import TypedDict

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.cache import caches
from django.core.mail.backends.base import BaseEmailBackend
from django.db import IntegrityError, models, transaction
from django.db.models import QuerySet
from django.utils import timezone

from . import outbox, sending_rate
from .mailing import Mailing
from .models import Delivery, Notification

# The task that sends a notification, as tasks.py registers it (by its name: tasks.py
# imports this module).
NOTIFY_CUSTOMERS = "playground.tasks.notify_customers"


class Progress(TypedDict):
    id: str
    message: str
    status: str
    total: int
    sent: int
    failed: int
    unknown: int
    done: bool
    reason: str


def customers() -> QuerySet[User]:
    """Whom a notification emails: active users with an email address."""
    return get_user_model().objects.filter(is_active=True).exclude(email="")


def active_notification() -> Notification | None:
    """The notification on its way, if any, as this process saw it within the last
    second: the page is read far more often than notifications start or end, and a
    stale answer is safe (the database still lets only one notification be active)."""
    return caches["local"].get_or_set(
        "active-notification", lambda: Notification.objects.filter(active=True).first()
    )


def show_or_start(message: str) -> tuple[Notification | None, bool]:
    """The notification on its way, or else a new one for `message`, started exactly
    once however many ask at the same moment (the database's one-active constraint
    decides). Returns it, and whether its message waits in the outbox because the
    broker is away.

    The notification and its message are recorded in one transaction and the message
    is published after the commit: a process killed in between leaves the message to
    Beat's relay_outbox, never a notification that nothing will run."""
    notification = active_notification()
    kept = False
    if notification is None:
        with transaction.atomic():
            notification = claim(uuid.uuid4(), message)
            if notification is not None:
                # The course's notify_customers.delay(message), under the notification's
                # id; by name, as tasks.py (which calls the services) registers it.
                outbox.enqueue(NOTIFY_CUSTOMERS, [message], task_id=str(notification.id))
        if notification is None:  # another request started one a moment ago: show that one
            notification = Notification.objects.filter(active=True).first()
        else:
            kept = outbox.holds(str(notification.id))
        caches["local"].set("active-notification", notification)
    return notification, kept


def claim(notification_id: uuid.UUID | str, message: str) -> Notification | None:
    """The notification with this id, recorded if it is new; None while another one is
    active (then nothing is recorded)."""
    try:
        with transaction.atomic():
            notification, _ = Notification.objects.get_or_create(
                id=notification_id, defaults={"message": message}
            )
    except IntegrityError:  # the one_active_notification constraint
        return None
    return notification


def begin(notification: Notification, batch_size: int) -> list[list[int]]:
    """Mark the notification running for the customers there are now, and split them
    into batches of `batch_size` ids."""
    recipients = list(customers().order_by("id").values_list("id", flat=True))
    Notification.objects.filter(id=notification.id).update(
        status=Notification.Status.RUNNING, total=len(recipients), started_at=timezone.now()
    )
    notification.total = len(recipients)
    return [recipients[i : i + batch_size] for i in range(0, len(recipients), batch_size)]


def unreached(notification: Notification, customer_ids: Iterable[int]) -> QuerySet[User]:
    """Those of these customers who have no delivery of the notification yet."""
    return customers().filter(id__in=customer_ids).exclude(delivery__notification=notification)


def email_customers(
    notification: Notification, customer_ids: Iterable[int], connection: BaseEmailBackend
) -> None:
    """Email the notification over `connection` to those of these customers not
    reached yet, recording each delivery's intent before the message is handed over
    and its outcome once the server has answered. A customer refused for good (5xx) is
    recorded as failed; any other SMTP failure is raised, for the caller to retry the
    customers still unreached."""
    mailing = Mailing(notification, connection)
    for customer in unreached(notification, customer_ids):
        deliver(mailing, customer)


# Exactly once, in numbers: SMTP cannot promise it (RFC 1047), since a client killed
# between the server taking a message and the client recording it cannot tell
# afterwards whether the server took it. So each delivery records its intent
# ("sending", committed) right before the message is handed over, and its outcome
# ("sent", "failed") once the server has answered: one INSERT and one UPDATE per email,
# no SELECT. A rerun of the batch skips every customer with a row, so a row left
# "sending" by a kill is never sent again, and finish() reports it as "unknown".
#
# Why report rather than resend (with the same Message-ID): the copy of a resent
# message would reach every customer whose first one did arrive (a kill after the
# server's "250"), and only some mail clients drop a repeated Message-ID; a missing
# email can still be sent by an operator who sees the count, a second one cannot be
# taken back. The unknowns are few: at most one per killed process, the one customer
# it was handing a message to.
#
# The intent is written after the server has accepted the recipients, just before
# DATA, not before MAIL FROM: nothing is delivered before DATA, so a worker killed
# while the server makes it wait (greylisting, a slow RCPT) leaves no row and the
# customer is sent the message on the rerun, as before.


def deliver(mailing: Mailing, customer: User) -> None:
    """Email the mailing's notification to one customer, recording the intent before
    the handover and the outcome after it: sent, or failed for good."""
    notification = mailing.notification
    intent = Delivery(notification=notification, customer=customer, status=Delivery.Status.SENDING)
    try:
        # The turn ends once the server has answered, or the handover failed.
        with sending_rate.Turn() as turn:
            mailing.send_to(customer, before_handover=lambda: hand_over(turn, intent))
    except IntegrityError:
        return  # another run of this batch has this customer: theirs is the one email
    except (smtplib.SMTPRecipientsRefused, smtplib.SMTPDataError) as refused:
        # The server answered with a refusal: it did not take the message.
        if isinstance(refused, smtplib.SMTPDataError):
            code, reason = refused.smtp_code, refused.smtp_error
        else:
            code, reason = next(iter(refused.recipients.values()))
        if code < 500:
            if intent.pk is not None:
                intent.delete()  # not sent, for sure: the batch's retry sends it
            raise  # temporary: the batch retries
        conclude(notification, customer, intent, Delivery.Status.FAILED, f"{code} {reason!r}")
        return
    # Any other failure after the intent (a connection lost, a silent server) leaves it
    # "sending": whether the server took the message is unknown.
    conclude(notification, customer, intent, Delivery.Status.SENT)


def hand_over(turn: sending_rate.Turn, intent: Delivery) -> None:
    """What comes right before a message is handed to the server: its turn within the
    provider's cap (a worker killed while it waits sent nothing, and records nothing),
    then the intent."""
    turn.take()
    Delivery.objects.insert(intent)


def conclude(
    notification: Notification,
    customer: User,
    intent: Delivery,
    status: Delivery.Status,
    error: str = "",
) -> None:
    """Record the outcome of a delivery: one UPDATE of its intent, or one INSERT when
    it ended before one was written (a recipient refused)."""
    if intent.pk is None:
        record(notification, [customer], status, error)
    else:
        Delivery.objects.conclude(intent.pk, status, error)


def give_up(notification: Notification, customer_ids: Iterable[int], error: str) -> int:
    """Record the customers still unreached as failed, with the error; how many."""
    failed = list(unreached(notification, customer_ids))
    record(notification, failed, Delivery.Status.FAILED, error)
    return len(failed)


def record(
    notification: Notification,
    customers: Iterable[User],
    status: Delivery.Status,
    error: str = "",
) -> None:
    """One INSERT that keeps the first record of each customer, rather than a SELECT
    and an INSERT per customer (docs/measured.md: the job)."""
    Delivery.objects.bulk_create(
        [
            Delivery(notification=notification, customer=c, status=status, error=error)
            for c in customers
        ],
        ignore_conflicts=True,
    )


def settle_unknowns(notification_id: uuid.UUID | str) -> int:
    """Turn the deliveries of a finished notification still "sending" into "unknown":
    their worker was killed between the intent and the outcome, and no batch of it
    will run again. How many."""
    return Delivery.objects.filter(
        notification_id=notification_id, status=Delivery.Status.SENDING
    ).update(status=Delivery.Status.UNKNOWN)


def finish(notification_id: uuid.UUID | str) -> Progress | None:
    """Mark the notification done and return its final progress; None if it was done
    already (or is unknown), so that finishing twice changes nothing."""
    unfinished = Notification.objects.filter(id=notification_id).exclude(
        status=Notification.Status.DONE
    )
    # Before it is marked done, so that finishing again after a crash in between still
    # settles them.
    settle_unknowns(notification_id)
    if not unfinished.update(status=Notification.Status.DONE, finished_at=timezone.now()):
        return None
    return progress(Notification.objects.get(id=notification_id))


def reap(stale_after: float, in_flight: Collection[str], as_of: datetime) -> list[Notification]:
    """Finish every active notification whose work is gone, with the reason, so that
    the next one can start: no sign of life (recorded, started, a delivery) for
    `stale_after` seconds before `as_of`, no message of it waiting in the outbox, and
    none of its tasks held by a worker (`in_flight`: the notification ids the workers
    held when asked, from `as_of` on: one that showed life since then may have tasks
    they did not report). Returns those it finished; the customers it did not reach
    keep no delivery."""
    now = timezone.now()
    reaped = []
    for notification in Notification.objects.filter(active=True):
        last_delivery = notification.deliveries.aggregate(last=models.Max("at"))["last"]
        signs = [notification.created_at, notification.started_at, last_delivery]
        quiet = as_of - max(sign for sign in signs if sign is not None)
        notification_id = str(notification.id)
        if (
            quiet < timedelta(seconds=stale_after)
            or notification_id in in_flight
            or outbox.holds(notification_id)
        ):
            continue
        reason = (
            f"No progress for {quiet.total_seconds():.0f} s and no task of it queued or"
            " running: its work was lost (a broker that lost its data?)."
        )
        finished = Notification.objects.filter(id=notification.id, active=True).update(
            status=Notification.Status.DONE, finished_at=now, reason=reason
        )
        if finished:
            settle_unknowns(notification.id)
            notification.reason = reason
            reaped.append(notification)
    return reaped


def purge(older_than_days: float) -> int:
    """Delete the notifications finished more than `older_than_days` ago, with their
    deliveries; how many. Active ones stay, however old."""
    cutoff = timezone.now() - timedelta(days=older_than_days)
    old = Notification.objects.filter(status=Notification.Status.DONE, finished_at__lt=cutoff)
    _, deleted = old.delete()
    return deleted.get(Notification._meta.label, 0)


def progress(notification: Notification) -> Progress:
    """Where the notification stands, counted from its deliveries (never stored twice)."""
    counts = dict(
        notification.deliveries.values_list("status").annotate(n=models.Count("id")).order_by()
    )
    return {
        "id": str(notification.id),
        "message": notification.message,
        "status": notification.status,
        "total": notification.total,
        "sent": counts.get(Delivery.Status.SENT, 0),
        "failed": counts.get(Delivery.Status.FAILED, 0),
        # Killed between the intent and the outcome: got one email or none, never two.
        "unknown": counts.get(Delivery.Status.UNKNOWN, 0),
        "done": notification.status == Notification.Status.DONE,
        "reason": notification.reason,
    }


def progress_of(notification_id: str) -> Progress | None:
    """The progress of the notification with this id; None if the id is unknown or
    not an id at all."""
    try:
        return progress(Notification.objects.get(id=uuid.UUID(notification_id)))
    except (ValueError, Notification.DoesNotExist):
        return None
