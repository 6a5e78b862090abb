"""How soon a whole worker's messages go to another worker on Redis: TRIALS mail
workers killed (SIGKILL, the worker and its pool) at a random moment of a notification
to CUSTOMERS, beside another mail worker, which gives back what a name silent for the
liveness window held (celery_guarantees/liveness.py). Per trial: the seconds from the
kill to the last of its messages being no longer the dead worker's (given back, taken
by the other, or run).

Not a ratio against a baseline: stock kombu's figure is its visibility timeout
(CELERY_VISIBILITY_TIMEOUT, 5 minutes), which a test shows
(test_a_batch_whose_whole_worker_is_killed_runs_on_another_worker[...-kombu])."""

import os
import random
import signal
import time
from statistics import median

from celery_guarantees.testing.waiting import wait_until

from bench.job import MESSAGE, seed_to, smtp_sink
from playground.models import Notification
from playground.tasks import notify_customers

TRIALS = 12
CUSTOMERS = 2_000


def whole_worker_kills(stage):
    rng = random.Random("whole-worker-kills")  # the same moments at every run
    seconds = []
    with smtp_sink(stage):
        seed_to(stage, CUSTOMERS)
        for _ in range(TRIALS):
            seconds.append(one_kill(stage, rng))
            stage.stop_all()
    per_trial = ", ".join(f"{each:.1f}" for each in seconds)
    return [
        {
            "detail": f"Whole-worker kills on Redis ({TRIALS}, at random moments of a"
            f" notification to {CUSTOMERS:,} customers): kill to its messages given to"
            f" another worker: median {median(seconds):.1f} s, max {max(seconds):.1f} s"
            f" (stock kombu: the visibility timeout, 300 s)\n  per trial: {per_trial}"
        }
    ]


def one_kill(stage, rng):
    stage.worker(1, "--queues=celery")  # the notification's start and finish
    doomed = stage.worker(2, "--queues=mail")
    stage.worker(2, "--queues=mail")
    result = notify_customers.delay(MESSAGE)
    name = f".{doomed.popen.pid}."  # in each of its consumer names: <host>.<pid>.<random>
    wait_until(lambda: held_by(stage, name), timeout=60)
    time.sleep(rng.uniform(0, 0.5))  # the random moment itself: a wait on nothing, on purpose
    held = held_by(stage, name)
    os.killpg(doomed.popen.pid, signal.SIGKILL)  # its session: the worker and its pool
    killed = time.monotonic()
    wait_until(lambda: not held & held_by(stage, name), timeout=60)
    taken_over = time.monotonic() - killed
    wait_until(lambda: Notification.objects.filter(id=result.id, status="done").exists(), 120)
    return taken_over


def held_by(stage, name):
    """The tags of the messages a worker whose consumer names contain `name` holds."""
    owners = stage.broker.hgetall("unacked_owner")
    return {tag for tag, owner in owners.items() if name in owner.decode()}
