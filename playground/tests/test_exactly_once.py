"""Exactly once, in numbers: workers killed with SIGKILL at random moments of a
notification (one pool process, or the whole worker), and what each customer got,
counted by the SMTP server's received messages.

SMTP cannot promise exactly once: a worker killed between handing a message over and
hearing the server's answer cannot know whether it was taken. Each delivery records
its intent before the handover and its outcome after it, so such a customer is known
to be in doubt: reported "unknown", never sent again. Every other customer gets
exactly one email; an unknown one gets one or none, never two.

Each trial kills at a moment drawn from its own seeded random generator (the seed is
printed with the outcome: rerun that parametrized trial to replay it). More trials:
EXACTLY_ONCE_TRIALS=12 (per kind of kill)."""

import os
import random
import signal
import time
from collections import Counter
from contextlib import suppress

import psutil
import pytest

from conftest import (
    POSTGRES_RABBITMQ,
    SQLITE_REDIS,
    call,
    deliveries,
    pool_processes,
    wait_until,
    wait_until_done,
)
from playground import services
from playground.models import Delivery

CUSTOMERS = 300
# A few per kind keep the file near a minute; docs/reliability.md's rate comes from more.
TRIALS = os.environ.get("EXACTLY_ONCE_TRIALS")
POOL_TRIALS = WORKER_TRIALS = int(TRIALS) if TRIALS else 3
# The killed worker's queues and the prefix of every broker key (CELERY_BROKER_KEY_PREFIX):
# the mail worker (the Procfile's mailer, beside a worker of the other queue, which
# lives), or a worker of both queues, which takes another way on Redis (celery_guarantees:
# a script over its lists, bells to wait on), killed as often, with its keys prefixed.
ONE_QUEUE, SEVERAL_QUEUES = ("mail", ""), ("celery,mail", "shop:")
WHOLE_WORKER_TRIALS = [
    pytest.param(stack, queues, prefix, trial,
                 id=f"{stack}-{queues}{'-prefixed' if prefix else ''}-{trial}")
    for stack, (queues, prefix) in [(SQLITE_REDIS, ONE_QUEUE), (POSTGRES_RABBITMQ, ONE_QUEUE),
                                    (SQLITE_REDIS, SEVERAL_QUEUES)]
    for trial in range(WORKER_TRIALS)
]  # fmt: skip
EVERYONE = {f"customer{n}@example.com" for n in range(CUSTOMERS)}


@pytest.fixture
def notification(project_env, seed_customers, smtp_server):
    """300 customers in batches of 25, and an SMTP server that takes a few ms per
    message: long enough to land kills in every phase of an email."""
    project_env["NOTIFY_BATCH_SIZE"] = "25"
    seed_customers(CUSTOMERS)
    smtp_server.delay = 0.002
    return smtp_server


def kill_at_a_random_moment(inbox, seed, kill):
    """Kill (`kill()`) at a random point of the sending: after a random share of the
    emails, plus a random part of one email's time. Returns that share."""
    rng = random.Random(seed)
    share, phase = rng.uniform(0, 0.9), rng.uniform(0, 0.01)
    wait_until(lambda: len(inbox.messages) >= 1 + share * CUSTOMERS, what=f"{share:.0%} sent")
    time.sleep(phase)  # the random moment itself: a wait on nothing, on purpose
    kill()
    return share


def killed_one_sending(pool, smtp_port, rng):
    """Kill one of these pool processes that is in the middle of a batch (it holds a
    connection to the SMTP server), if any is; whether one was. A process killed
    between two tasks loses none, and the trial would prove nothing. They are frozen
    while they are looked at, so that the one chosen cannot finish its batch first."""
    for pid in pool:
        os.kill(pid, signal.SIGSTOP)
    sending = [pid for pid in pool if connected_to(pid, smtp_port)]
    if sending:
        os.kill(rng.choice(sending), signal.SIGKILL)
    for pid in pool:
        with suppress(ProcessLookupError):  # the killed one, once its worker reaped it
            os.kill(pid, signal.SIGCONT)
    return bool(sending)


def connected_to(pid, port):
    connections = psutil.Process(pid).net_connections(kind="tcp")
    return any(c.raddr and c.raddr.port == port for c in connections)


def unknown_customers(database):
    unknown = Delivery.objects.using(database).filter(status="unknown")
    return set(unknown.values_list("customer__email", flat=True))


def assert_exactly_once_outside_the_unknowns(inbox, database, what):
    received = Counter(message["To"] for message in inbox.messages)
    unknown = unknown_customers(database)
    counts = deliveries(database)
    got_one = sum(received[customer] for customer in unknown)
    print(f"{what}: {len(unknown)} unknown ({got_one} got the email, the others none)")

    assert set(received) <= EVERYONE
    assert {c: received[c] for c in EVERYONE - unknown if received[c] != 1} == {}
    assert {c: received[c] for c in unknown if received[c] > 1} == {}
    assert "sending" not in counts  # every intent settled once the notification is done
    assert counts.get("sent", 0) + counts.get("failed", 0) + len(unknown) == CUSTOMERS
    assert counts.get("sent", 0) == sum(received[c] for c in EVERYONE - unknown)


@pytest.mark.parametrize("trial", range(POOL_TRIALS))
@pytest.mark.both_stacks
def test_a_pool_process_killed_at_a_random_moment_sends_nobody_two_emails(
    trial, notification, project_env, start_worker, database
):
    worker = start_worker("worker", "--concurrency=2")
    seed = f"pool-process-{trial}"
    rng = random.Random(seed)
    call(project_env, "Killed at random")

    def kill_one_pool_process():
        wait_until(
            lambda: killed_one_sending(pool_processes(worker), int(project_env["EMAIL_PORT"]), rng),
            what="a pool process in the middle of a batch",
        )

    share = kill_at_a_random_moment(notification, seed, kill_one_pool_process)
    wait_until_done(database)

    assert "WorkerLostError" in worker.log()
    what = f"seed {seed!r}: one pool process killed after {share:.0%} of the emails"
    assert_exactly_once_outside_the_unknowns(notification, database, what)


@pytest.mark.parametrize(
    ("stack", "queues", "prefix", "trial"), WHOLE_WORKER_TRIALS, indirect=["stack"]
)
def test_a_whole_worker_killed_at_a_random_moment_sends_nobody_two_emails(
    stack, queues, prefix, trial, notification, project_env, start_worker, database
):
    # The killed worker's messages go back within seconds: RabbitMQ's as its connection
    # drops, Redis's once the worker has been silent for 5 s (the visibility timeout is
    # left at 5 minutes; test_worker_liveness.py).
    project_env["CELERY_BROKER_KEY_PREFIX"] = prefix
    if queues == "mail":
        start_worker("worker", "--concurrency=1", "--queues=celery")
    first = start_worker("first", "--concurrency=2", f"--queues={queues}")
    seed = f"whole-worker-{trial}"
    call(project_env, "Killed at random")

    def kill_the_whole_worker():
        first.kill()

    share = kill_at_a_random_moment(notification, seed, kill_the_whole_worker)
    first.popen.wait()
    start_worker("second", "--concurrency=2", f"--queues={queues}")
    wait_until_done(database)

    what = f"seed {seed!r}: the whole worker of {queues} {prefix} killed after {share:.0%}"
    assert_exactly_once_outside_the_unknowns(notification, database, what)


@pytest.mark.django_db
def test_the_admin_counts_the_unknowns_and_lists_them(admin_client, django_user_model):
    customers = [
        django_user_model.objects.create(username=f"c{n}", email=f"c{n}@example.com")
        for n in range(3)
    ]
    notification = services.claim("6f1c8a52-0000-4000-8000-000000000201", "Hi")
    services.begin(notification, batch_size=3)
    services.record(notification, customers[:2], Delivery.Status.SENT)
    services.record(notification, customers[2:], Delivery.Status.SENDING)  # killed mid-send
    services.finish(notification.id)

    changelist = admin_client.get("/admin/playground/notification/").content.decode()
    unknowns = f"notification__id__exact={notification.id}&amp;status__exact=unknown"
    assert unknowns in changelist
    listed = admin_client.get(f"/admin/playground/delivery/?{unknowns.replace('&amp;', '&')}")
    assert listed.status_code == 200
    assert [d.customer for d in listed.context["cl"].result_list] == [customers[2]]
    status = admin_client.get(f"/playground/notifications/{notification.id}/").json()
    assert (status["sent"], status["failed"], status["unknown"]) == (2, 0, 1)
