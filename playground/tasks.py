from time import sleep

import redis
from celery import shared_task
from celery.utils.log import get_task_logger
from django.conf import settings

from . import outbox

logger = get_task_logger(__name__)


def notify_lock():
    """The lock that keeps two notify_customers runs apart. It expires after the task's
    hard time limit, so a run killed without releasing it cannot block the next ones."""
    client = redis.Redis.from_url(settings.CACHES["default"]["LOCATION"])
    return client.lock(
        "playground:notify_customers", timeout=settings.NOTIFY_CUSTOMERS_LOCK_SECONDS
    )


def acquire_for(lock, task_id):
    """Take the lock for this task, or take it over from an earlier delivery of the same
    task whose worker died mid-run (the lock holds the task id)."""
    if lock.acquire(blocking=False, token=task_id):
        return True
    lock.local.token = task_id.encode()
    return lock.owned() and lock.reacquire()


@shared_task(base=outbox.OutboxTask, bind=True, ignore_result=True, max_retries=None)
def notify_customers(self, message):
    """The course's stand-in for emailing every customer: logs, then waits
    NOTIFY_CUSTOMERS_SECONDS.

    Never runs twice at once: while another run holds the lock it retries every
    NOTIFY_CUSTOMERS_RETRY_SECONDS, and a periodic run whose `expires` passes meanwhile
    is dropped. Safe to run again (it is, when a worker dies mid-run): its only effect
    is its log lines."""
    lock = notify_lock()
    if not acquire_for(lock, self.request.id):
        logger.info("Another notify_customers is running: retrying later")
        raise self.retry(countdown=settings.NOTIFY_CUSTOMERS_RETRY_SECONDS)
    try:
        logger.info("Sending 10k emails...")
        logger.info(message)
        sleep(settings.NOTIFY_CUSTOMERS_SECONDS)
        logger.info("Emails were successfully sent!")
    finally:
        lock.release()


@shared_task(ignore_result=True)
def relay_outbox():
    """Hands the broker what the web kept in the outbox while Redis was away. Safe to
    run again and on several workers at once: a message leaves the outbox only as it
    is published, and keeps its task id."""
    outbox.relay()
