"""Real parts for the tests: a throwaway redis-server on a free port, an SMTP server
(aiosmtpd) that can refuse or hold messages, a migrated SQLite database, and the
project's own processes (web, worker, beat, flower) started from the Procfile's
commands with an environment that points them at these. Never the machine's shared
Redis: this test process's Celery app and cache point at memory until a test asks for
the throwaway Redis, and then at it.

Two lanes: a test that uses the throwaway Redis (and so any process started here) is
marked `slow`; `pytest -m "not slow"` runs the others, in process, in seconds.
Every wait here waits on the thing itself: a worker answering a ping, a port taking
connections, a row, a queue's length."""

import asyncio
import base64
import json
import logging
import socket
import sqlite3
import subprocess
import sys
import threading
from contextlib import closing
from email import message_from_bytes
from pathlib import Path

import pytest
import redis
import requests
import yaml
from aiosmtpd.controller import Controller
from celery import Celery
from django.conf import settings
from django.core.cache import caches
from django.test import override_settings
from kombu.exceptions import OperationalError

from harness.localredis import LocalRedis, RedisUnavailable
from harness.processes import (
    BASE_DIR,
    ProjectProcess,
    free_port,
    manage,
    procfile_command,
    production,
    project_env_for,
    redis_env,
)
from harness.waiting import wait_until
from storefront.beat import SingleBeatScheduler
from storefront.celery import celery as celery_app
from storefront.settings.environment import BROKER_DB, CACHE_DB


def compose_command(service):
    """The command docker-compose.yml gives a service."""
    compose = yaml.safe_load((BASE_DIR / "docker-compose.yml").read_text())
    return compose["services"][service]["command"]


def task_of(message):
    """(task name, args) of a Celery message as Redis keeps it."""
    args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
    return message["headers"]["task"], args


def queued_tasks(client, queue="celery"):
    """(task name, args) of each message waiting in a Redis queue, oldest first."""
    return [task_of(json.loads(raw)) for raw in reversed(client.lrange(queue, 0, -1))]


def unacked_tasks(client):
    """(task name, args) of each message a worker has taken and not yet acknowledged
    (running, or waiting for its countdown)."""
    return [task_of(json.loads(raw)[0]) for raw in client.hvals("unacked")]


def call(project_env, message):
    """Send notify_customers(message) as an operator would: `celery call`."""
    argv = [*procfile_command("worker")[:3], "call", "playground.tasks.notify_customers"]
    argv.append(f'--args=["{message}"]')
    subprocess.run(argv, cwd=BASE_DIR, env=project_env, check=True, capture_output=True)


def deliveries(database):
    """How many deliveries the database holds, by status."""
    return dict(database.execute("SELECT status, count(*) FROM playground_delivery GROUP BY 1"))


def pytest_collection_modifyitems(items):
    for item in items:
        if "redis_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


def done_notifications(database):
    """How many notifications the database holds as done."""
    query = "SELECT count(*) FROM playground_notification WHERE status = 'done'"
    return database.execute(query).fetchone()[0]


def wait_until_done(database, count=1, timeout=60):
    """Wait until `count` notifications are done, as the database says."""
    wait_until(lambda: done_notifications(database) >= count, timeout, f"{count} done")


def worker_answers(project_env, hostname):
    """Whether a worker with this hostname answers a ping through the processes' broker."""
    # Not the current app: this process keeps sending through storefront's.
    app = Celery(broker=project_env["CELERY_BROKER_URL"], set_as_current=False)
    try:
        return bool(app.control.ping([hostname], timeout=0.5))
    except (OSError, redis.RedisError, OperationalError):  # a broker just restarted: not yet
        return False
    finally:
        app.close()


def port_open(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def pool_processes(worker):
    """The pids of a worker's pool processes."""
    pid = worker.popen.pid
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


@pytest.fixture(scope="session", autouse=True)
def nothing_shared():
    """Until a test asks for the throwaway Redis, this process's Celery app and cache
    live in memory: a test can never reach the machine's shared Redis by mistake."""
    celery_app.conf.update(broker_url="memory://", result_backend="cache+memory://")
    memory = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    with override_settings(CACHES={**settings.CACHES, "default": memory}):
        yield


@pytest.fixture(autouse=True)
def forget_local_cache():
    caches["local"].clear()  # what this process remembers belongs to the test before


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory, nothing_shared):
    server = LocalRedis(free_port(), tmp_path_factory.mktemp("redis"))
    try:
        server.start()
    except RedisUnavailable as why:
        pytest.exit(f"The tests need a real Redis and {why}: install redis-server.", returncode=1)
    # This process enqueues and caches there too, never on the machine's shared Redis.
    celery_app.conf.update(broker_url=server.url(BROKER_DB), result_backend=server.url(BROKER_DB))
    cache = {**settings.CACHES["default"], "LOCATION": server.url(CACHE_DB)}
    with override_settings(CACHES={**settings.CACHES, "default": cache}):
        yield server
    server.stop()


@pytest.fixture
def broker(redis_server):
    """A client on the broker's Redis database, emptied before the test."""
    client = redis.Redis.from_url(redis_server.url(BROKER_DB))
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def own_redis(project_env, tmp_path):
    """A Redis of the test's own, to stop, kill and restart; the project's processes use it."""
    server = LocalRedis(free_port(), tmp_path / "own-redis").start()
    project_env.update(redis_env(server))
    yield server
    server.stop()


@pytest.fixture
def project_env(broker, redis_server, tmp_path):
    """The environment of the project's processes, on the throwaway Redis (emptied) and
    an SQLite file of the test's own; a test may change it before starting them."""
    return project_env_for(redis_server, tmp_path / "db.sqlite3")


@pytest.fixture
def start(project_env, tmp_path):
    """Start a process of the project; every one is stopped when the test ends."""
    started = []

    def start(name, argv, ready=None, port=None):
        """`ready`: a condition that holds once the process serves (no log line)."""
        process = ProjectProcess(argv, project_env, tmp_path / f"{name}.log", port)
        started.append(process)
        if ready:
            process.wait_until(ready)
        return process

    yield start
    for process in reversed(started):
        process.stop()
        # Captured, so shown only when the test fails: what each process said.
        print(f"----- {process.argv}\n{process.log()[-6000:]}")


@pytest.fixture
def start_worker(start, project_env):
    """Start a Celery worker as the Procfile does, with extra options (e.g. --concurrency=1)."""

    def start_worker(name="worker", *options):
        hostname = f"{name}@{socket.gethostname()}"
        argv = [*procfile_command("worker"), f"--hostname={hostname}", *options]
        return start(name, argv, ready=lambda: worker_answers(project_env, hostname))

    return start_worker


@pytest.fixture
def database(project_env):
    """The processes' database (an SQLite file of the test's own), migrated; an open
    connection to read it."""
    manage(project_env, "migrate", "--noinput")
    path = project_env["DATABASE_URL"].removeprefix("sqlite:///")
    with closing(sqlite3.connect(path)) as connection:
        yield connection


@pytest.fixture
def seed_customers(database, project_env):
    def seed_customers(count):
        manage(project_env, "seed_customers", str(count))

    return seed_customers


class Inbox:
    """The test SMTP server's handler: keeps what it receives, and plays faults."""

    def __init__(self):
        self.messages = []
        self.delay = 0.0  # seconds before taking each message
        self.refusals = 0  # the next recipients to refuse with 451 (try again later)
        self.refused = set()  # addresses to refuse with 451 every time
        self.rejected = set()  # addresses to refuse for good (550)
        self.hold_at = None  # hold the message after this many, until release()
        self.held = 0  # connections waiting on a held answer
        self._released = threading.Event()

    def wait_until_holding(self, connections=1, timeout=60):
        """Wait until this many connections wait on a held answer: then none of their
        clients is between the server taking a message and recording it."""
        wait_until(lambda: self.held >= connections, timeout, f"{connections} held connections")

    def release(self):
        self.hold_at = None
        self._released.set()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.rejected:
            return "550 5.1.1 No such mailbox"
        if self.refusals or address in self.refused:
            self.refusals = max(self.refusals - 1, 0)
            return "451 4.3.0 Try again later"
        if self.hold_at is not None and len(self.messages) >= self.hold_at:
            # The client waits for this answer; the server has not taken the message.
            self.held += 1
            while not self._released.is_set():
                await asyncio.sleep(0.05)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        await asyncio.sleep(self.delay)
        self.messages.append(message_from_bytes(envelope.content))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_server(project_env):
    """A real SMTP server (aiosmtpd) on a free port; the project's processes send to it."""
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd's every command
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    project_env.update(EMAIL_HOST="127.0.0.1", EMAIL_PORT=str(port))
    yield inbox
    inbox.release()
    controller.stop()


@pytest.fixture
def start_web(start, project_env, database):
    """Start the web server on a free port, its database migrated."""

    def start_web():
        port = free_port()
        argv = [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"]
        return start("web", argv, ready=lambda: port_open(port), port=port)

    return start_web


@pytest.fixture
def web(start_web):
    """The web server, no worker running."""
    return start_web()


@pytest.fixture
def prod_env(project_env):
    """project_env with production settings and their required secrets."""
    project_env.update(production(project_env))
    return project_env


@pytest.fixture
def prod_web(start, prod_env):
    """The web service as the image builds it (collectstatic) and docker-compose.yml runs
    it (migrations, then gunicorn), on a free port."""
    manage(prod_env, "collectstatic", "--noinput")
    port = free_port()
    prod_env["GUNICORN_CMD_ARGS"] = f"--bind 127.0.0.1:{port} --workers 2"
    argv = ["sh", "-c", compose_command("web")]
    return start("web", argv, ready=lambda: port_open(port), port=port)


@pytest.fixture
def start_beat(start, project_env, tmp_path):
    """Start Beat; it is ready once it holds its lock in the broker's Redis."""

    def holds_lock():
        with redis.Redis.from_url(project_env["CELERY_BROKER_URL"]) as client:
            return client.exists(SingleBeatScheduler.lock_name)

    def start_beat():
        argv = [*procfile_command("beat"), f"--schedule={tmp_path / 'celerybeat-schedule'}"]
        return start("beat", argv, ready=holds_lock)

    return start_beat


@pytest.fixture
def flower(start, project_env):
    """Flower on a free port, with the credentials in project_env['FLOWER_BASIC_AUTH']."""
    project_env["FLOWER_BASIC_AUTH"] = "tester:s3cret"
    port = free_port()
    argv = [*procfile_command("flower"), f"--port={port}"]
    healthy = lambda: port_open(port) and requests.get(f"http://127.0.0.1:{port}/healthcheck").ok  # noqa: E731
    return start("flower", argv, ready=healthy, port=port)
