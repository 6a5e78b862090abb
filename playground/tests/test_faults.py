"""Real faults against real processes: Redis stopped, killed and hung, workers killed
and stopped mid-task, Beat outrunning the worker. Each test counts the task's effect
(its log lines) to show the work ran exactly as often as it should."""

import os
import re
import signal
import socket
import sqlite3
import time
from datetime import datetime
from pathlib import Path

import pytest
import requests

from conftest import procfile_command, queued_tasks
from playground.tasks import notify_customers

NOTICE = "your notification is saved"
SENT = "Emails were successfully sent!"


def runs_of(worker, message):
    """How many times notify_customers started with `message`, by the worker's log."""
    return len(re.findall(rf"\]: {re.escape(message)}$", worker.log(), re.MULTILINE))


def outbox_size(project_env):
    database = project_env["DATABASE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(database) as db:
        return db.execute("SELECT count(*) FROM playground_outboxmessage").fetchone()[0]


def pool_processes(worker):
    pid = worker.popen.pid
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def timed_get(url):
    started = time.monotonic()
    response = requests.get(url, timeout=10)
    return response, time.monotonic() - started


@pytest.fixture
def hung_redis():
    """A port that accepts connections (the kernel completes them) and never answers."""
    with socket.create_server(("127.0.0.1", 0), backlog=64) as server:
        yield server.getsockname()[1]


def test_hello_answers_at_once_while_redis_is_down_and_its_work_runs_once_redis_is_back(
    own_redis, project_env, web, start_worker, start_beat
):
    project_env.update(OUTBOX_RELAY_EVERY="0.5", NOTIFY_CUSTOMERS_EVERY="3600")
    worker, _beat = start_worker(), start_beat()
    own_redis.stop()

    response, seconds = timed_get(web.url("/playground/hello/"))

    assert response.status_code == 200
    assert "Hello Mosh" in response.text
    assert NOTICE in response.text
    assert seconds < 2
    assert outbox_size(project_env) == 1
    assert re.search(r"Broker unavailable .*: kept .*notify_customers.* in the outbox", web.log())

    own_redis.start()
    worker.wait_for(SENT)
    time.sleep(2)  # time enough for a second, wrong run to show
    assert runs_of(worker, "Hello") == 1
    assert outbox_size(project_env) == 0

    # The web's connection recovers too: the next request goes straight to Redis.
    response, _ = timed_get(web.url("/playground/hello/"))
    assert NOTICE not in response.text
    worker.wait_for(SENT, count=2)


def test_hello_answers_within_two_seconds_while_redis_hangs(hung_redis, project_env, start_web):
    project_env["CELERY_BROKER_URL"] = f"redis://127.0.0.1:{hung_redis}/1"
    web = start_web()

    response, seconds = timed_get(web.url("/playground/hello/"))

    assert (response.status_code, seconds < 2) == (200, True)
    assert NOTICE in response.text
    assert outbox_size(project_env) == 1


def test_a_task_whose_pool_process_is_killed_runs_again_to_completion(
    project_env, start_worker, broker
):
    project_env["NOTIFY_CUSTOMERS_SECONDS"] = "2"
    worker = start_worker("worker", "--concurrency=1")
    notify_customers.delay("Killed mid-task")
    worker.wait_for("Sending 10k emails...")

    for pid in pool_processes(worker):
        os.kill(pid, signal.SIGKILL)

    worker.wait_for(SENT)
    assert runs_of(worker, "Killed mid-task") == 2
    assert worker.log().count(SENT) == 1
    assert queued_tasks(broker) == []


def test_a_task_whose_whole_worker_is_killed_runs_on_the_next_worker(
    project_env, start_worker, broker
):
    # Short limits so Redis gives the message back within the test; the relation
    # visibility timeout > hard time limit holds as in production.
    project_env.update(
        NOTIFY_CUSTOMERS_SECONDS="1",
        CELERY_TASK_SOFT_TIME_LIMIT="2",
        CELERY_TASK_TIME_LIMIT="3",
        CELERY_VISIBILITY_TIMEOUT="4",
    )
    first = start_worker("first", "--concurrency=1")
    notify_customers.delay("Worker killed mid-task")
    first.wait_for("Sending 10k emails...")

    for pid in [*pool_processes(first), first.popen.pid]:
        os.kill(pid, signal.SIGKILL)
    first.popen.wait()
    time.sleep(4)  # the visibility timeout: Redis still counts the message as taken

    second = start_worker("second", "--concurrency=1")
    second.wait_for(SENT)
    assert runs_of(first, "Worker killed mid-task") == 1
    assert runs_of(second, "Worker killed mid-task") == 1
    assert queued_tasks(broker) == []


def test_sigterm_lets_the_running_task_finish_and_leaves_the_waiting_ones_queued(
    project_env, start_worker, broker
):
    project_env["NOTIFY_CUSTOMERS_SECONDS"] = "2"
    worker = start_worker("worker", "--concurrency=1")
    notify_customers.delay("Running at deploy")
    worker.wait_for("Sending 10k emails...")
    notify_customers.delay("Waiting at deploy")

    worker.popen.send_signal(signal.SIGTERM)

    assert worker.popen.wait(timeout=30) == 0
    assert runs_of(worker, "Running at deploy") == 1
    assert worker.log().count(SENT) == 1
    assert queued_tasks(broker) == [("playground.tasks.notify_customers", ["Waiting at deploy"])]


def test_sigquit_gives_the_running_task_its_soft_shutdown_then_requeues_it(
    project_env, start_worker, broker
):
    project_env.update(NOTIFY_CUSTOMERS_SECONDS="5", CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT="1")
    worker = start_worker("worker", "--concurrency=1")
    notify_customers.delay("Cut off by a cold shutdown")
    worker.wait_for("Sending 10k emails...")

    worker.popen.send_signal(signal.SIGQUIT)
    worker.popen.wait(timeout=30)

    assert "soft shutdown" in worker.log().lower()
    assert SENT not in worker.log()
    assert queued_tasks(broker) == [
        ("playground.tasks.notify_customers", ["Cut off by a cold shutdown"])
    ]


def test_queued_messages_survive_kill_9_of_redis_and_the_worker_reconnects(
    own_redis, project_env, web, start_worker
):
    project_env["NOTIFY_CUSTOMERS_RETRY_SECONDS"] = "0.2"
    for _ in range(3):
        requests.get(web.url("/playground/hello/"), timeout=5)

    own_redis.kill()
    own_redis.start()

    queue = own_redis.client(1)
    assert queued_tasks(queue) == [("playground.tasks.notify_customers", ["Hello"])] * 3
    worker = start_worker()
    worker.wait_for(SENT, count=3)

    own_redis.kill()
    own_redis.start()
    requests.get(web.url("/playground/hello/"), timeout=5)
    worker.wait_for(SENT, count=4, timeout=60)
    assert runs_of(worker, "Hello") == 4


def test_periodic_runs_never_overlap_and_late_ones_are_dropped(
    project_env, start_worker, start_beat, broker
):
    # Beat every 0.5 s for a 1.5 s task on two pool processes: with nothing to stop
    # it, runs would overlap and the backlog would grow.
    project_env.update(
        NOTIFY_CUSTOMERS_EVERY="0.5",
        NOTIFY_CUSTOMERS_SECONDS="1.5",
        NOTIFY_CUSTOMERS_RETRY_SECONDS="0.2",
    )
    worker = start_worker("worker", "--concurrency=2")
    beat = start_beat()
    beat.wait_for("Sending due task notify_customers ", count=12)
    beat.stop()
    time.sleep(2)  # the last run finishes; what is left expires

    runs = run_intervals(worker.log())
    assert len(runs) >= 3
    assert all(end <= next_start for (_, end), (next_start, _) in zip(runs, runs[1:], strict=False))
    assert "Discarding revoked task" in worker.log()  # how Celery drops an expired message
    assert [task for task in queued_tasks(broker) if task[1] == ["Hello World"]] == []


def run_intervals(log):
    """(start, end) of each notify_customers run, from the worker's log, in order."""
    stamp = r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}): INFO/\S+\] \S+\[([0-9a-f-]+)\]: "
    starts = {tid: t for t, tid in re.findall(stamp + r"Sending 10k emails", log)}
    ends = {tid: t for t, tid in re.findall(stamp + re.escape(SENT), log)}

    def parse(value):
        return datetime.strptime(value, "%Y-%m-%d %H:%M:%S,%f")

    return sorted((parse(starts[tid]), parse(ends[tid])) for tid in ends)


def test_a_second_beat_refuses_to_start_so_no_periodic_task_runs_twice(start_beat, start, tmp_path):
    start_beat()

    second = start("second-beat", [*procfile_command("beat"), f"--schedule={tmp_path / 'second'}"])

    assert second.popen.wait(timeout=30) != 0
    assert "another Celery Beat holds this broker's lock" in second.log()
    assert "Traceback" not in second.log()
