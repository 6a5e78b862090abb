"""The queue path: the cost of one .delay(), a worker's throughput and the latency
from .delay() to the task starting, each against raw redis-py on the same Redis."""

import cProfile
import time
from statistics import median

from celery_guarantees.testing.waiting import wait_until

from bench.stage import cpu_seconds, p50_p99, row
from bench.tasks import stamp, tally
from playground.tasks import notify_customers
from storefront.celery import celery

CALLS = 3000
PROFILED = 500
MESSAGES = 4000
ROUNDS = 3
ROUND_TRIPS = 300
# The Procfile's worker, of the queue these tasks go to (not the mail queue beside it):
# it waits on its one list with the transport's move itself.
PROCFILE_WORKER = "--queues=celery"


def delay_cost(stage):
    """µs per notify_customers.delay('Hello') from this process (through the outbox),
    and per send_task of the same message (Celery alone), against LPUSH of a message of
    the same size; and where .delay()'s time goes."""
    notify_customers.delay("Hello")  # connect and declare once, as a running server has
    message = stage.broker.lpop("celery")
    delay = per_call(lambda: notify_customers.delay("Hello"))
    send = per_call(lambda: celery.send_task(notify_customers.name, ["Hello"]))
    floor = per_call(lambda: stage.broker.lpush("bench:floor", message))
    profile = cProfile.Profile()
    profile.runcall(lambda: [notify_customers.delay("Hello") for _ in range(PROFILED)])
    stage.broker.flushdb()
    return [
        row(".delay() from Django", delay * 1e6, floor * 1e6, "µs/call", lower_is_better=True),
        row("send_task() from Django", send * 1e6, floor * 1e6, "µs/call", lower_is_better=True),
        {"detail": "Where .delay() spends its time (cProfile):\n" + hot_spots(profile, PROFILED)},
    ]


def per_call(call):
    """Seconds per call of `call`, over CALLS calls."""
    started = time.perf_counter()
    for _ in range(CALLS):
        call()
    return (time.perf_counter() - started) / CALLS


def hot_spots(profile, calls, count=8):
    """The functions .delay() spends the most of its own time in, per call."""
    top = sorted(profile.getstats(), key=lambda entry: entry.inlinetime, reverse=True)[:count]
    return "\n".join(
        f"{entry.inlinetime / calls * 1e6:7.1f} µs  {label(entry.code)}" for entry in top
    )


def label(code):
    if isinstance(code, str):  # a built-in
        return code
    return f"{code.co_name} ({code.co_filename.split('site-packages/')[-1]}:{code.co_firstlineno})"


def throughput(stage, variants):
    """Tasks drained per second by worker processes, and the CPU they used per task,
    against a raw BRPOP consumer: the median of ROUNDS drains each, every rate shown."""
    floor, floor_cpu = drains(stage, lambda: stage.floor("drain", stage.redis.url(1), MESSAGES))
    rows, rates = [], []
    for label, concurrency, options in variants:
        rate, cpu = drains(
            stage, lambda c=concurrency, o=options: stage.worker(c, PROCFILE_WORKER, *o)
        )
        rows += [
            row(f"worker throughput, {label}", median(rate), median(floor), "tasks/s"),
            row(
                f"worker CPU per task, {label}",
                median(cpu),
                median(floor_cpu),
                "ms/task",
                lower_is_better=True,
            ),
        ]
        rates.append(f"  {label}: " + ", ".join(f"{each:,.0f}" for each in rate))
    floor_rates = ", ".join(f"{each:,.0f}" for each in floor)
    spread = f"Worker throughput, tasks/s of each drain (the raw loop: {floor_rates}):"
    return [*rows, {"detail": "\n".join([spread, *rates])}]


def drains(stage, start_consumer):
    """The rates and the CPU per task of ROUNDS drains, each by a consumer of its own: a
    worker of one process drains at one of two rates on two cores, as its main and pool
    processes share a core or not (docs/measured.md), so one drain says little."""
    rates, cpus = zip(*(drain(stage, start_consumer) for _ in range(ROUNDS)), strict=True)
    return rates, cpus


def drain(stage, start_consumer):
    """Tasks per second, and CPU milliseconds per task, of the consumer draining
    MESSAGES tasks queued before it started: both from its first task done to its last."""
    for _ in range(MESSAGES):
        tally.delay()
    consumer = start_consumer()

    def done():
        return int(stage.broker.get("bench:done") or 0)

    # A fine poll: the moments are the measurement.
    first = wait_until(lambda: done() >= 1, timeout=120, interval=0.002)
    cpu_at_first = cpu_seconds(consumer)
    last = wait_until(lambda: done() >= MESSAGES, timeout=120, interval=0.002)
    cpu = cpu_seconds(consumer) - cpu_at_first
    stage.stop_all()
    return (MESSAGES - 1) / (last - first), cpu / (MESSAGES - 1) * 1e3


def latency(stage):
    """Seconds from .delay() to the task starting on an idle worker, against LPUSH to
    a raw BRPOP consumer; and how much of it the sending process spends before the
    message is on its way."""
    stage.worker(1, PROCFILE_WORKER)
    worker, worker_sends = samples(stage, lambda: stamp.delay(time.time()))
    stage.stop_all()
    stage.floor("echo", stage.redis.url(1), ROUND_TRIPS)
    floor, floor_sends = samples(stage, lambda: stage.broker.lpush("bench:floor", time.time()))
    stage.stop_all()
    (w50, w99), (f50, f99) = p50_p99(worker), p50_p99(floor)
    split = (
        f"Latency .delay() to start, p50 {w50 * 1e3:.2f} ms: .delay() returns after"
        f" {median(worker_sends) * 1e3:.2f} ms (the raw LPUSH: {median(floor_sends) * 1e3:.2f} ms"
        f" of {f50 * 1e3:.2f} ms)"
    )
    return [
        row("latency .delay() to start, p50", w50 * 1e3, f50 * 1e3, "ms", lower_is_better=True),
        row("latency .delay() to start, p99", w99 * 1e3, f99 * 1e3, "ms", lower_is_better=True),
        {"detail": split},
    ]


def samples(stage, send):
    """The seconds from each of ROUND_TRIPS sends to its task starting, and the seconds
    each send took."""
    found, sends = [], []
    for _ in range(ROUND_TRIPS):
        started = time.time()
        send()
        sends.append(time.time() - started)
        _, seconds = stage.broker.blpop("bench:latency", timeout=30)
        found.append(float(seconds))
    return found, sends
