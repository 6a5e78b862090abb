"""More worker machines: the 10,000-email job with its workers on 1, 2 and 3 hosts of
their own (network namespaces, harness/network.py), each worker with the same number
of pool processes, the broker's Redis on another host. Against the same run on one
host.

The hosts share this machine's cores, so emails/s says little past the cores; the
workers' CPU per email (user + system time of every worker process over the run,
divided by the emails) does not depend on how many cores are free: what N machines
would each spend."""

import time

from aiosmtpd.controller import Controller
from celery import Celery
from celery_guarantees.testing.servers import free_port
from celery_guarantees.testing.waiting import wait_until

from bench.job import CUSTOMERS, Sink, counted, seed_to
from bench.stage import cpu_seconds, row
from harness.localredis import LocalRedis
from harness.network import Network
from harness.processes import redis_env, worker_answers, worker_command
from playground.models import Notification

HOSTS = (1, 2, 3)
PROCESSES_PER_HOST = 2


def worker_hosts(stage):
    network = Network()
    sink, port = Sink(), free_port()
    controller = Controller(sink, hostname=network.address, port=port)
    controller.start()
    redis = LocalRedis(free_port(), stage.dir / "hosts-redis", host=network.host("broker"))
    redis.start()
    env = {**stage.env, **redis_env(redis), "EMAIL_HOST": network.address, "EMAIL_PORT": str(port)}
    try:
        seed_to(stage, CUSTOMERS)
        hosts = [network.host(f"worker{n}") for n in range(max(HOSTS))]
        runs = {}
        for n in HOSTS:
            runs[n], _server_cpu = counted(sink, lambda n=n: timed_on(stage, env, hosts[:n]))
    finally:
        stage.stop_all()
        redis.stop()
        controller.stop()
        network.remove()
    one_host = CUSTOMERS / runs[1][0]
    rows, cpu_lines = [], ["Worker CPU per email (every worker process on every host):"]
    for n, (seconds, cpu) in runs.items():
        measure = f"10,000 emails, {n} worker host(s) x {PROCESSES_PER_HOST} processes"
        rows.append(row(measure, CUSTOMERS / seconds, one_host, "emails/s"))
        cpu_lines.append(f"  {n} host(s): {cpu / CUSTOMERS * 1e3:.2f} ms")
    return [*rows, {"detail": "\n".join(cpu_lines)}]


def timed_on(stage, env, hosts):
    """Seconds from sending the notification to it being done, and the CPU seconds its
    workers spent meanwhile, with one idle worker on each host."""
    workers = []
    for host in hosts:
        hostname, argv = worker_command(f"bench-{host.name}")
        argv.append(f"--concurrency={PROCESSES_PER_HOST}")
        worker = stage.start(hostname, host.command(argv), env=env)
        worker.wait_until(lambda h=hostname: worker_answers(env, h), timeout=60)
        workers.append(worker)
    app = Celery(broker=env["CELERY_BROKER_URL"], set_as_current=False)
    cpu_before = sum(cpu_seconds(worker) for worker in workers)
    started = time.perf_counter()
    sent = app.send_task("playground.tasks.notify_customers", ["Spring sale"])
    finished = wait_until(
        lambda: Notification.objects.filter(id=sent.id, status="done").exists(),
        timeout=300,
        interval=0.05,
    )
    cpu = sum(cpu_seconds(worker) for worker in workers) - cpu_before
    app.close()
    stage.stop_all()
    return finished - started, cpu
