"""What every benchmark runs on: one of the two stacks the tests run on, started for
the run (SQLite + Redis, or PostgreSQL + RabbitMQ beside Redis for results and the
cache), and the project's processes started as the Procfile starts them, pointed at
them."""

import shutil
import sys
import tempfile
from pathlib import Path
from statistics import quantiles

import psutil
from celery_guarantees.testing.servers import free_port

from harness.localpostgres import LocalPostgres
from harness.localrabbitmq import LocalRabbitMQ
from harness.localredis import LocalRedis
from harness.processes import (
    POSTGRES_RABBITMQ,
    SQLITE_REDIS,
    ProjectProcess,
    manage,
    project_env_for,
    worker_answers,
    worker_command,
)
from storefront.settings.environment import BROKER_DB


class Stage:
    def __init__(self, stack=SQLITE_REDIS):
        self.stack = stack
        self.dir = Path(tempfile.mkdtemp(prefix="storefront-bench-"))
        self.redis = LocalRedis(free_port(), self.dir / "redis").start()
        self.broker = self.redis.client(BROKER_DB)  # the Redis broker's, on sqlite-redis
        self.env = project_env_for(self.redis, self.dir / "db.sqlite3")
        self.env["LOG_LEVEL"] = "WARNING"
        self.servers = []
        if stack == POSTGRES_RABBITMQ:
            postgres = LocalPostgres(free_port()).start()
            rabbitmq = LocalRabbitMQ(free_port()).start()
            self.servers += [postgres, rabbitmq]
            self.env["DATABASE_URL"] = postgres.create_database("storefront_bench")
            self.env["CELERY_BROKER_URL"] = rabbitmq.create_vhost("storefront_bench")
        self.processes = []
        self.manage("migrate", "--noinput")

    def manage(self, *args, env=None):
        manage(env or self.env, *args)

    def start(self, name, argv, ready=None, port=None, env=None):
        process = ProjectProcess(argv, env or self.env, self.dir / f"{name}.log", port)
        self.processes.append(process)
        if ready:
            process.wait_for(ready, timeout=60)
        return process

    def worker(self, concurrency=None, *options, env=None):
        """A worker as the Procfile starts it, of both queues unless told (`options`),
        with the benchmark's tasks loaded; the project's default concurrency unless told."""
        name = f"bench{len(self.processes)}"
        hostname, argv = worker_command(name, "-I", "bench.tasks", *options)
        if concurrency:
            argv.append(f"--concurrency={concurrency}")
        worker = self.start(name, argv, env=env)
        worker.wait_until(lambda: worker_answers(env or self.env, hostname), timeout=60)
        return worker

    def floor(self, mode, target, count, *more, name=None):
        argv = [sys.executable, "-m", "bench.floor", mode, target, str(count), *map(str, more)]
        return self.start(name or f"floor-{mode}", argv)

    def stop_all(self):
        while self.processes:
            self.processes.pop().stop()
        self.broker.flushdb()

    def close(self):
        self.stop_all()
        for server in self.servers:
            server.remove()
        self.redis.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def cpu_seconds(process):
    """The user and system CPU time a project process has used so far, with that of its
    children: the running ones (a worker's pool) and those it has reaped (a pool
    process replaced after CELERY_WORKER_MAX_TASKS_PER_CHILD tasks). Unlike a rate, it
    holds its value on a busy machine."""
    main = psutil.Process(process.popen.pid)
    return sum(own_and_reaped(each) for each in [main, *main.children(recursive=True)])


def own_and_reaped(process):
    try:
        times = process.cpu_times()
    except psutil.NoSuchProcess:  # exited since it was listed: its parent counts it
        return 0.0
    return times.user + times.system + times.children_user + times.children_system


def p50_p99(samples):
    cuts = quantiles(samples, n=100)
    return cuts[49], cuts[98]


def row(measure, figure, baseline, unit, lower_is_better=False):
    """One line of the table. The ratio is the share of the baseline's speed reached:
    1.0 is as fast as the baseline, whether more (req/s) or less (µs) is better."""
    ratio = baseline / figure if lower_is_better else figure / baseline
    return {
        "measure": measure,
        "figure": figure,
        "baseline": baseline,
        "unit": unit,
        "ratio": ratio,
    }
