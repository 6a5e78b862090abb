"""`make run`'s Ctrl-C (harness/run.py): one Ctrl-C stops every process of the Procfile,
the worker with its warm shutdown, so that the batch it is sending finishes, and no
process prints a traceback.

The stack runs the Procfile's commands with its ports (and its Maildir) moved, so that
it never meets the one a developer may be running."""

import os
import re
import signal
import socket
import subprocess
import sys
from contextlib import suppress
from pathlib import Path

import psutil
import pytest
import redis
import requests
from celery_guarantees.testing.servers import free_port

from conftest import (
    BASE_DIR,
    call,
    deliveries,
    port_open,
    wait_until,
    wait_until_done,
    worker_answers,
)
from storefront.beat import SingleBeatScheduler


def descendants(pid):
    """Every process started under `pid`, however deep (children of any of its threads)."""
    children = []
    with suppress(FileNotFoundError):  # exited meanwhile: it has none
        for thread in Path(f"/proc/{pid}/task").iterdir():
            children += [int(child) for child in (thread / "children").read_text().split()]
    return children + [grandchild for child in children for grandchild in descendants(child)]


def started_at(pid):
    """When the process started (clock ticks since boot), None once it is gone: with the
    pid, it names one process, never a later one given the same pid. (A process that
    ends while its file is read makes the read fail with ESRCH.)"""
    with suppress(FileNotFoundError, ProcessLookupError):
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[19]
    return None


def all_ended(processes):
    """Whether every one of these processes ({pid: started_at}) has ended."""
    return all(started_at(pid) != when for pid, when in processes.items())


def moved(text, old, new):
    assert old in text, f"the Procfile no longer has {old!r}: move its new form"
    return text.replace(old, new)


@pytest.fixture
def make_run(project_env, tmp_path):
    """Start the whole stack as `make run` does (harness/run.py), in a session of its own:
    a signal to its process group is then what a terminal's Ctrl-C is to the command in
    front. Every process it started is killed (by pid) if the test leaves any running,
    even one orphaned by run.py's end."""
    ports = {"web": free_port(), "flower": free_port(), "mail": free_port()}
    procfile = (BASE_DIR / "Procfile").read_text()
    procfile = moved(procfile, "127.0.0.1:8000", f"127.0.0.1:{ports['web']}")
    procfile = moved(procfile, "127.0.0.1:2525", f"127.0.0.1:{ports['mail']}")
    procfile = moved(procfile, ".run/mail", str(tmp_path / "mail"))
    flower = re.search(r"^flower: .*$", procfile, re.MULTILINE).group()
    procfile = moved(procfile, flower, f"{flower} --port={ports['flower']}")
    (tmp_path / "Procfile").write_text(procfile)
    project_env["PROCFILE"] = str(tmp_path / "Procfile")
    log_path = tmp_path / "run.log"
    runs = []
    started = {}  # pid: started_at, of run.py and of every process under it

    def serving():
        with redis.Redis.from_url(project_env["REDIS_CACHE_URL"]) as client:
            beat_runs = client.exists(SingleBeatScheduler.lock_name)
        flower_url = f"http://127.0.0.1:{ports['flower']}/healthcheck"
        return (
            beat_runs
            and all(port_open(port) for port in ports.values())
            and requests.get(flower_url, timeout=5).ok
            and workers_answer(project_env)
        )

    def start():
        with open(log_path, "wb") as log:
            run = subprocess.Popen(
                [sys.executable, "-m", "harness.run"], cwd=BASE_DIR, env=project_env,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        runs.append(run)
        started[run.pid] = started_at(run.pid)
        wait_until(lambda: run.poll() is not None or serving(), 90, what=log_path.read_text)
        assert run.poll() is None, log_path.read_text()
        started.update((pid, started_at(pid)) for pid in descendants(run.pid))
        return run, log_path

    yield start
    for run in runs:
        started.update((pid, started_at(pid)) for pid in descendants(run.pid))
    for pid, when in started.items():
        if when is not None and started_at(pid) == when:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    for run in runs:
        run.wait()
        print(log_path.read_text()[-8000:])  # shown when the test fails


def workers_answer(project_env):
    """Whether both of the Procfile's workers (worker, mailer) answer."""
    return all(
        worker_answers(project_env, f"{name}@{socket.gethostname()}")
        for name in ("celery", "mailer")
    )


def test_one_ctrl_c_stops_every_process_cleanly_and_the_running_batch_finishes(
    make_run, project_env, seed_customers, smtp_server, database
):
    project_env.update(NOTIFY_BATCH_SIZE="10", NOTIFY_CUSTOMERS_EVERY="3600")
    seed_customers(10)
    smtp_server.hold_at = 4
    run, log = make_run()
    call(project_env, "Running at Ctrl-C")
    smtp_server.wait_until_holding()
    processes = {pid: started_at(pid) for pid in descendants(run.pid)}

    os.killpg(run.pid, signal.SIGINT)  # Ctrl-C
    # Only a worker knows it has stopped taking messages; each says so in its log.
    warm = lambda: log.read_text().count("Warm shutdown") >= 2  # noqa: E731
    wait_until(warm, what="the warm shutdown of worker and mailer")
    smtp_server.release()

    assert run.wait(timeout=60) == 0  # stopped as asked: make prints no error
    wait_until(lambda: all_ended(processes), what="every process ended")
    assert deliveries(database) == {"sent": 10}
    assert "Traceback" not in log.read_text()
    assert "WorkerLostError" not in log.read_text()


def main_processes(run, command):
    """The pids of the `celery ... <command>` processes under `run` but those whose
    parent is one (a worker's pool processes)."""
    parents = {}
    for pid in descendants(run.pid):
        with suppress(psutil.NoSuchProcess):  # exited meanwhile
            process = psutil.Process(pid)
            if command in process.cmdline():
                parents[pid] = process.ppid()
    return {pid for pid, parent in parents.items() if parent not in parents}


def test_a_changed_python_file_restarts_the_workers_and_beat_and_one_ctrl_c_still_stops_all(
    make_run, project_env, seed_customers, smtp_server, tmp_path, database
):
    project_env.update(RELOAD_WATCH=str(tmp_path), NOTIFY_CUSTOMERS_EVERY="3600")
    seed_customers(3)
    run, log = make_run()
    workers, beat = main_processes(run, "worker"), main_processes(run, "beat")
    assert (len(workers), len(beat)) == (2, 1)  # worker and mailer; Beat

    (tmp_path / "tasks.py").write_text("# changed\n")

    def restarted():
        now_workers, now_beat = main_processes(run, "worker"), main_processes(run, "beat")
        return (
            (len(now_workers), len(now_beat)) == (2, 1)
            and not now_workers & workers
            and not now_beat & beat
            and workers_answer(project_env)
        )

    wait_until(restarted, 60, what="new workers and a new Beat")
    call(project_env, "After the reload")
    wait_until_done(database)
    assert deliveries(database) == {"sent": 3}
    processes = {pid: started_at(pid) for pid in descendants(run.pid)}

    os.killpg(run.pid, signal.SIGINT)  # Ctrl-C

    assert run.wait(timeout=60) == 0
    wait_until(lambda: all_ended(processes), what="every process ended")
    assert "Traceback" not in log.read_text()
