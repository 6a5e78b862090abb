"""The notification job: 10,000 emails to a local SMTP server by a worker with 1, 2
and 4 pool processes and with 4 threads, each against as many processes sending them
over one SMTP connection each with plain smtplib (no Django, no database, no broker):
what the SMTP server takes with that many connections on this machine, for the same
email (its bytes as the worker sends them, taken from one sent first). Each in emails
per second, and in the CPU the senders used per email; and the CPU the SMTP server used
per email, which the senders share the machine's cores with."""

import time
import uuid
from contextlib import contextmanager

from aiosmtpd.controller import Controller
from celery_guarantees.testing.servers import free_port
from celery_guarantees.testing.waiting import wait_until
from django.conf import settings
from django.core.mail import get_connection

from bench.stage import cpu_seconds, row
from playground.mailing import Mailing
from playground.models import Notification
from playground.services import customers
from playground.tasks import notify_customers

CUSTOMERS = 10_000
MESSAGE = "Spring sale"
# (how many send at once, the worker's other options): prefork pools, and a pool of
# threads, which waits on the SMTP server as well but does not use both cores.
WORKERS = [(1, []), (2, []), (4, []), (4, ["--pool=threads"])]


class Sink:
    """An SMTP server that takes every message and only counts them, keeping the last."""

    def __init__(self):
        self.count = 0
        self.last = b""

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        self.last = envelope.original_content
        return "250 OK"


@contextmanager
def smtp_sink(stage):
    """A Sink served in this process on a free port, where the stage's processes send."""
    sink, port = Sink(), free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    stage.env.update(EMAIL_HOST="127.0.0.1", EMAIL_PORT=str(port))
    try:
        yield sink, port
    finally:
        controller.stop()


def notification(stage):
    with smtp_sink(stage) as (sink, port):
        seed_to(stage, CUSTOMERS)
        email = stage.dir / "email.eml"
        email.write_bytes(as_sent(sink, port, customers().first()))
        rows, servers = [], []
        for concurrency, options in WORKERS:
            (floor, floor_cpu), floor_server = counted(
                sink, lambda c=concurrency: plain_senders(stage, port, c, email)
            )
            (seconds, cpu), server = counted(
                sink, lambda c=concurrency, o=options: timed_notification(stage, c, *o)
            )
            default = (
                " (the default)"
                if concurrency == settings.CELERY_WORKER_CONCURRENCY and not options
                else ""
            )
            worker = " ".join([f"worker --concurrency={concurrency}", *options])
            senders = f"{stage.stack}, {worker}{default}"
            rows.append(row(f"10,000 emails, {senders}", per(seconds), per(floor), "emails/s"))
            cpu_row = row(
                f"CPU per email, {senders}", ms(cpu), ms(floor_cpu), "ms", lower_is_better=True
            )
            rows.append(cpu_row)
            servers.append(
                f"  {worker}: {ms(floor_server):.2f} ms from the plain senders,"
                f" {ms(server):.2f} ms from the worker"
            )
        heading = f"CPU per email of the SMTP server (aiosmtpd, in this process), {stage.stack}:"
        return [*rows, {"detail": "\n".join([heading, *servers])}]


def per(seconds):
    """Emails per second, for all of them sent in `seconds`."""
    return CUSTOMERS / seconds


def ms(cpu_seconds):
    """Milliseconds of CPU per email, for all of them sent with `cpu_seconds`."""
    return cpu_seconds / CUSTOMERS * 1e3


def seed_to(stage, count):
    """As many active customers with an email as `count`, seeding those missing."""
    missing = count - customers().count()
    if missing > 0:
        stage.manage("seed_customers", str(missing))


def counted(sink, send):
    """What `send()` returns, once the SMTP server has checked it took every email; and
    the CPU seconds this process used meanwhile, which are the SMTP server's: it runs
    here, in a thread of its own, while the rest of the process waits for the senders
    (and asks the database for the notification's end every 50 ms)."""
    received, cpu = sink.count, time.process_time()
    result = send()
    if sink.count - received != CUSTOMERS:
        raise RuntimeError(f"the SMTP server took {sink.count - received} of {CUSTOMERS} emails")
    return result, time.process_time() - cpu


def as_sent(sink, port, customer):
    """The bytes of the notification's email to `customer` as a worker sends them (the
    project's Mailing, over SMTP), as the SMTP server received them."""
    notification = Notification(id=uuid.uuid4(), message=MESSAGE)
    with get_connection(host="127.0.0.1", port=port) as connection:
        Mailing(notification, connection).send_to(customer)
    return sink.last


def plain_senders(stage, port, processes, email):
    """Seconds for `processes` plain smtplib senders, one connection each, to send the
    email (a file of its bytes) to the customers between them (the slowest one's time),
    and the CPU seconds they used."""
    share = CUSTOMERS // processes
    senders = [
        stage.floor("mail", f"127.0.0.1:{port}", share, email, name=f"floor-mail-{n}")
        for n in range(processes)
    ]
    for sender in senders:
        sender.popen.wait()
    reports = [[float(figure) for figure in sender.log().split()] for sender in senders]
    stage.stop_all()
    return max(seconds for seconds, _ in reports), sum(cpu for _, cpu in reports)


def timed_notification(stage, concurrency, *options):
    """Seconds from .delay() to the notification done, on an idle worker, and the CPU
    seconds the worker used meanwhile."""
    worker = stage.worker(concurrency, *options)
    cpu = cpu_seconds(worker)
    started = time.perf_counter()
    result = notify_customers.delay(MESSAGE)
    finished = wait_until(
        lambda: Notification.objects.filter(id=result.id, status="done").exists(),
        timeout=300,
        interval=0.05,
    )
    cpu = cpu_seconds(worker) - cpu
    stage.stop_all()
    return finished - started, cpu
