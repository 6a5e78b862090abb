from time import sleep

from celery import shared_task
from celery.utils.log import get_task_logger
from django.conf import settings

logger = get_task_logger(__name__)


@shared_task
def notify_customers(message):
    """The course's stand-in for emailing every customer: logs, then waits
    NOTIFY_CUSTOMERS_SECONDS. It has no effect beyond its log lines, so it is
    safe to run again."""
    logger.info("Sending 10k emails...")
    logger.info(message)
    sleep(settings.NOTIFY_CUSTOMERS_SECONDS)
    logger.info("Emails were successfully sent!")
