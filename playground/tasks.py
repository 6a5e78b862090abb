"""The playground's jobs, as the course defines them: @shared_task functions that
translate a Celery message into calls to the notification's rules (services.py) and
say in the log what they did."""

import smtplib

from celery import Task, chord, current_app, shared_task
from celery.app.task import Context
from celery.utils.log import get_task_logger
from celery.utils.time import get_exponential_backoff_interval
from django.conf import settings
from django.core.mail import get_connection
from django.utils import timezone

from . import outbox, services
from .models import Notification

logger = get_task_logger(__name__)


@shared_task(base=outbox.OutboxTask, bind=True, ignore_result=True, max_retries=None)
def notify_customers(self: Task, message: str) -> None:
    """Emails `message` to every customer. Returns at once: the emails go out in
    batches of NOTIFY_BATCH_SIZE, each a send_batch task for any worker, and
    finish_notification says when the last is out. The Notification whose id is this
    task's id shows the progress.

    One notification at a time: while another is active this retries every
    NOTIFY_CUSTOMERS_RETRY_SECONDS, and a periodic run whose `expires` passes meanwhile
    is dropped. Safe to run again: a finished notification is not sent again, and the
    batches of a running one skip whoever already has the message."""
    notification_id = str(self.request.id)
    # The page claimed its notification already (this finds it); a run sent by Beat,
    # `celery call` or a replay claims one here.
    notification = services.claim(notification_id, message)
    if notification is None:
        logger.info("Another notification is running: retrying later")
        raise self.retry(countdown=settings.NOTIFY_CUSTOMERS_RETRY_SECONDS)
    if notification.status == Notification.Status.DONE:
        return
    batches = services.begin(notification, settings.NOTIFY_BATCH_SIZE)

    logger.info("Sending %d emails...", notification.total)
    logger.info(message)
    finish = finish_notification.si(notification_id)
    if not batches:
        finish.delay()
        return
    finish_anyway = finish.clone().on_error(finish_after_error.s(notification_id=notification_id))
    chord(send_batch.si(notification_id, batch) for batch in batches)(finish_anyway)


@shared_task(bind=True, max_retries=None)
def send_batch(self: Task, notification_id: str, customer_ids: list[int]) -> None:
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
    try:
        with get_connection() as connection:
            services.email_customers(notification, customer_ids, connection)
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
        failed = services.give_up(notification, customer_ids, str(error))
        logger.error("SMTP failed (%s): %d customers not reached", error, failed)


@shared_task(ignore_result=True)
def finish_notification(notification_id: str) -> None:
    """Marks the notification done once its last batch has finished, and says so in
    the log. Safe to run again: a finished notification stays as it is."""
    say_finished(notification_id)


@shared_task(ignore_result=True)
def finish_after_error(
    request: Context, exc: BaseException, traceback: object, notification_id: str
) -> None:
    """Finishes the notification, with what it reached, when its chord could not run
    finish_notification: a batch failed for good, or the worker that finished the
    last batch could not publish finish_notification (cut off from the broker). Celery
    calls an errback that takes (request, exc, traceback) in the worker process where
    the chord failed, not as a message, so this needs no broker (why it is needed:
    docs/upstream/celery-chord-callback-lost-when-its-publish-fails.md). Safe to run
    again."""
    say_finished(notification_id)


def say_finished(notification_id: str) -> None:
    progress = services.finish(notification_id)
    if progress is None:
        return
    if progress["sent"] == progress["total"]:
        logger.info("Emails were successfully sent!")
    else:
        logger.warning(
            "Emails were sent to %d of %d customers; %d failed; %d unknown (killed mid-send)",
            progress["sent"],
            progress["total"],
            progress["failed"],
            progress["unknown"],
        )


@shared_task(ignore_result=True)
def reap_stale_notifications() -> None:
    """Finishes, with the reason, an active notification whose work was lost (its
    messages gone with a broker's data), so that the next one can start. Safe to run
    again and on several workers: finishing is one conditional UPDATE."""
    # Asking the workers takes seconds: a notification that started meanwhile has tasks
    # they may not have reported, so staleness counts up to when they were asked.
    asked = timezone.now()
    in_flight = notifications_in_flight()
    for notification in services.reap(settings.NOTIFY_STALE_AFTER, in_flight, as_of=asked):
        logger.warning("Notification %s finished: %s", notification.id, notification.reason)


def notifications_in_flight() -> set[str]:
    """The notifications whose tasks some worker holds: running, reserved, or waiting
    for their countdown. Every task of a notification carries its id: as its own task
    id (notify_customers) or as its first argument (send_batch, finish_notification)."""
    inspect = current_app.control.inspect(timeout=1)
    running = [*(inspect.active() or {}).values(), *(inspect.reserved() or {}).values()]
    requests = [task for tasks in running for task in tasks]
    scheduled = (inspect.scheduled() or {}).values()
    requests += [entry["request"] for entries in scheduled for entry in entries]
    held = {str(request["id"]) for request in requests}
    held.update(str(request["args"][0]) for request in requests if request["args"])
    return held


@shared_task(ignore_result=True)
def purge_old_notifications() -> None:
    """Deletes the notifications (and their deliveries) finished more than
    NOTIFY_RETENTION_DAYS ago. Safe to run again: what is gone stays gone."""
    logger.info("Purged %d old notifications", services.purge(settings.NOTIFY_RETENTION_DAYS))


@shared_task(ignore_result=True)
def relay_outbox() -> None:
    """Hands the broker what the web kept in the outbox while Redis was away. Safe to
    run again and on several workers at once: a message leaves the outbox only as it
    is published, and keeps its task id."""
    outbox.relay()
