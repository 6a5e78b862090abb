"""The notification job: 10,000 emails to a local SMTP server by a worker with 1, 2
and the default number of pool processes, against one process sending them over one
SMTP connection with plain smtplib."""

import time

from aiosmtpd.controller import Controller
from django.conf import settings

from bench.stage import row
from harness.processes import free_port
from harness.waiting import wait_until
from playground.models import Notification
from playground.tasks import notify_customers

CUSTOMERS = 10_000
DEFAULT = f"{settings.CELERY_WORKER_CONCURRENCY} (the default)"


class Sink:
    """An SMTP server that takes every message and only counts them."""

    def __init__(self):
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        return "250 OK"


def notification(stage):
    sink, port = Sink(), free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    stage.env.update(EMAIL_HOST="127.0.0.1", EMAIL_PORT=str(port))
    try:
        stage.manage("seed_customers", str(CUSTOMERS))
        sender = stage.floor("mail", f"127.0.0.1:{port}", CUSTOMERS)
        sender.popen.wait()
        floor = float(sender.log())
        rows = []
        for processes in (1, 2, None):  # None: the project's default
            received = sink.count
            seconds = timed_notification(stage, processes)
            if sink.count - received != CUSTOMERS:
                raise RuntimeError(f"the SMTP server took {sink.count - received} emails")
            measure = f"10,000 emails, worker --concurrency={processes or DEFAULT}"
            rows.append(row(measure, CUSTOMERS / seconds, CUSTOMERS / floor, "emails/s"))
        return rows
    finally:
        controller.stop()


def timed_notification(stage, processes):
    """Seconds from .delay() to the notification done, on an idle worker."""
    stage.worker(processes)
    started = time.perf_counter()
    result = notify_customers.delay("Spring sale")
    finished = wait_until(
        lambda: Notification.objects.filter(id=result.id, status="done").exists(),
        timeout=300,
        interval=0.05,
    )
    stage.stop_all()
    return finished - started
