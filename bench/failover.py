"""What a Redis failover costs: Redis replicates asynchronously, so a primary killed
the moment after a write may take that write with it. A Redis primary and replica
under three Sentinels, two workers and Beat each on a host of its own
(harness/network.py); TRIALS notifications to every customer of the stage's database
(at least CUSTOMERS) in batches of 100, the primary killed once in each, at a random
moment, and brought back as a replica. For each trial: customers emailed twice or
never, and whether the notification was finished by its chord (its counter in Redis)
or, the counter lost, by Beat's reaper.

Not a ratio against a baseline: counts, and the failover's time, per trial."""

import random
import threading
import time
from collections import Counter
from statistics import median

from aiosmtpd.controller import Controller
from celery import Celery
from celery_guarantees.testing.servers import free_port
from celery_guarantees.testing.waiting import wait_until

from bench.job import seed_to
from harness.localredis import RedisWithSentinels
from harness.network import Network
from harness.processes import procfile_command, production, worker_answers, worker_command
from playground.models import Delivery, Notification
from playground.services import customers
from storefront.beat import SingleBeatScheduler
from storefront.settings.environment import BROKER_DB, CACHE_DB

TRIALS = 10
CUSTOMERS = 2_000


class Recipients:
    """An SMTP server that counts the emails each recipient got. It counts in its own
    thread; `got()` is a copy, taken under the same lock."""

    def __init__(self):
        self._got = Counter()
        self._lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self._lock:
            self._got.update(envelope.rcpt_tos)
        return "250 OK"

    def got(self):
        with self._lock:
            return Counter(self._got)


def failovers(stage):
    network = Network()
    recipients, port = Recipients(), free_port()
    controller = Controller(recipients, hostname=network.address, port=port)
    controller.start()
    redis = RedisWithSentinels(network, stage.dir / "sentinels").start()
    # Production's settings: development's Beat would add the course's demo mailings.
    env = {
        **production(stage.env),
        "CELERY_BROKER_URL": redis.url(BROKER_DB),
        "REDIS_CACHE_URL": redis.url(CACHE_DB),
        "REDIS_SENTINEL_MASTER": redis.master,
        "EMAIL_HOST": network.address,
        "EMAIL_PORT": str(port),
        "NOTIFY_BATCH_SIZE": "100",
        # A notification whose chord counter was lost is finished by the reaper soon.
        "NOTIFY_STALE_AFTER": "10",
        "NOTIFY_REAP_EVERY": "2",
    }
    app = Celery(broker=env["CELERY_BROKER_URL"], set_as_current=False)
    app.conf.broker_transport_options = {"master_name": redis.master}
    try:
        seed_to(stage, CUSTOMERS)
        emails = customers().count()  # more than CUSTOMERS after the job's section seeded its own
        start_on_hosts(stage, network, env, redis)
        trials = [trial(app, redis, recipients, emails) for _ in range(TRIALS)]
        beat_kept = beat_holds_lock(redis)
        errors = sorted({line for process in stage.processes for line in errors_in(process.log())})
    finally:
        app.close()
        stage.stop_all()
        redis.stop()
        controller.stop()
        network.remove()
    return [{"detail": report(trials, emails, beat_kept, errors)}]


def start_on_hosts(stage, network, env, redis):
    for n in (1, 2):
        host = network.host(f"worker{n}")
        hostname, argv = worker_command(f"failover{n}", "--concurrency=2")
        worker = stage.start(hostname, host.command(argv), env=env)
        worker.wait_until(lambda h=hostname: worker_answers(env, h), timeout=60)
    beat = stage.start("beat", network.host("beat").command(procfile_command("beat")), env=env)
    beat.wait_until(lambda: beat_holds_lock(redis), timeout=60)


def trial(app, redis, recipients, emails):
    """One notification of `emails` emails, its primary killed at a random moment, and
    brought back."""
    before = recipients.got()
    kill_after = random.randint(emails // 10, emails * 9 // 10)
    sent = app.send_task("playground.tasks.notify_customers", ["Failover"])
    wait_until(lambda: (recipients.got() - before).total() >= kill_after, timeout=120)
    lost_primary, old = redis.current_primary(), redis.primary_address()
    killed = time.perf_counter()
    lost_primary.kill()
    promoted = wait_until(lambda: redis.primary_address() not in (old, None), timeout=60)
    lost_primary.start()
    wait_until(redis.whole, timeout=180, what="the primary's replica in sync")
    wait_until(lambda: Notification.objects.filter(id=sent.id, status="done").exists(), timeout=180)
    got = recipients.got() - before
    statuses = Delivery.objects.filter(notification_id=sent.id).values_list("status")
    return {
        "deliveries": dict(Counter(status for (status,) in statuses)),
        "failover": promoted - killed,
        "never": emails - len(got),
        "twice": sum(1 for count in got.values() if count > 1),
        "reaped": bool(Notification.objects.get(id=sent.id).reason),
    }


def beat_holds_lock(redis):
    with redis.watch().master_for(redis.master, db=CACHE_DB) as client:
        return bool(client.exists(SingleBeatScheduler.lock_name))


def errors_in(log):
    """The ERROR and CRITICAL lines of a process's log, without their time."""
    for line in log.splitlines():
        if " ERROR " in line or " CRITICAL " in line:
            yield line.split(" ", 2)[2][:200]


def report(trials, emails, beat_kept, errors):
    seconds = [each["failover"] for each in trials]
    return "\n".join(
        [
            f"Redis failovers ({len(trials)}, the primary killed mid-notification of "
            f"{emails:,} emails, at random):",
            f"  kill to a promoted replica: median {median(seconds):.1f} s,"
            f" max {max(seconds):.1f} s",
            f"  customers never emailed: {sum(each['never'] for each in trials)}",
            f"  customers emailed twice: {sum(each['twice'] for each in trials)}",
            f"  notifications finished by the reaper (chord counter lost): "
            f"{sum(each['reaped'] for each in trials)}",
            f"  Beat still holds its lock after them: {'yes' if beat_kept else 'no'}",
            "  per trial (seconds to failover, never emailed, twice, deliveries recorded):",
            *(
                f"    {each['failover']:.1f} s, {each['never']}, {each['twice']},"
                f" {each['deliveries']}"
                for each in trials
            ),
            f"  errors logged ({len(errors)} kinds):",
            *(f"    {error}" for error in errors),
        ]
    )
