"""Real parts for the tests: a throwaway redis-server on a free port, an SMTP server
(aiosmtpd) that can refuse or hold messages, a migrated SQLite database, and the
project's own processes (web, worker, beat, flower) started from the Procfile's
commands with an environment that points them at these. Never the machine's shared
Redis: this test process's Celery app and cache point at memory (storefront/settings/
test.py) until a test asks for the throwaway Redis, and then at it.

Two lanes: a test that uses the throwaway Redis (and so any process started here) is
marked `slow`; `pytest -m "not slow"` runs the others, in process, in seconds.
Every wait here waits on the thing itself: a worker answering a ping, a port taking
connections, a row, a queue's length.

Two stacks: every test that starts the project's processes runs them on SQLite + Redis
(the embedded default, test ids `[sqlite-redis]`); a test marked `both_stacks` runs
again on PostgreSQL + RabbitMQ (`[postgres-rabbitmq]`): a throwaway PostgreSQL cluster
and RabbitMQ node started for the run, a database and a vhost of the test's own. Redis
stays in both (results, cache, Beat's lock). Tests read the processes' database
through Django (`database` is the name of a Django connection to it)."""

import asyncio
import base64
import fcntl
import io
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from contextlib import contextmanager
from email import message_from_bytes
from pathlib import Path
from unittest.mock import patch
from urllib.parse import urlsplit

import dj_database_url
import pytest
import redis
import requests
import yaml
from aiosmtpd.controller import Controller
from amqp.exceptions import InternalError, NotFound
from celery_guarantees.redis_transport import bell, taking_list
from celery_guarantees.testing.servers import RedisUnavailable, free_port, free_ports
from celery_guarantees.testing.waiting import wait_until
from django.conf import settings
from django.core.cache import caches
from django.core.management import call_command
from django.db import connections
from django.db.models import Count
from django.test import override_settings
from kombu import Connection, Queue
from kombu.exceptions import ChannelError

from harness.localpostgres import LocalPostgres, PostgresUnavailable
from harness.localrabbitmq import LocalRabbitMQ, RabbitMQCluster, RabbitMQUnavailable
from harness.localredis import LocalRedis, RedisWithSentinels
from harness.network import Network, why_unavailable
from harness.processes import (
    BASE_DIR,
    POSTGRES_RABBITMQ,
    SQLITE_REDIS,
    STACKS,
    ProjectProcess,
    manage,
    procfile_command,
    production,
    project_env_for,
    redis_env,
    worker_answers,
    worker_command,
)
from harness.stack import Stack, build_images, why_podman_cannot_run
from playground.models import Delivery, Notification
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


def sent_message(broker, task, args=()):
    """The bytes of a real message for `task` as Redis holds it, taken off the queue
    again (and its bell silenced): for a test to spoil, or to push at a moment of its
    choosing."""
    celery_app.send_task(task, list(args))
    return broker.pipeline().rpop("celery").delete(bell("celery")).execute()[0]


def unacknowledged(client, queue="celery"):
    """How many messages of a Redis queue no worker has acknowledged: waiting on it,
    being taken (the transport's taking list) or taken and recorded unacknowledged."""
    return client.llen(queue) + client.llen(taking_list(queue)) + client.hlen("unacked")


def the_one_held(broker):
    """The tag of the one message a worker holds, and when it was taken (kombu's index)."""
    [(tag, taken_at)] = broker.zrange("unacked_index", 0, -1, withscores=True)
    return tag, taken_at


def wait_until_kept_past(broker, tag, taken_at, seconds):
    """Wait until the message `tag` taken at `taken_at` has been kept `seconds` by its
    worker, whose renewals move its time in kombu's index (celery_guarantees' liveness),
    and check that it was not given back meanwhile."""

    def moved_on():
        taken = broker.zscore("unacked_index", tag)
        return taken is None or taken > taken_at + seconds

    wait_until(moved_on, what=f"the message kept {seconds} s")
    assert broker.zscore("unacked_index", tag) is not None  # still its worker's


def unacked_tasks(client):
    """(task name, args) of each message a worker has taken and not yet acknowledged
    (running, or waiting for its countdown)."""
    return [task_of(json.loads(raw)[0]) for raw in client.hvals("unacked")]


class TaskQueue:
    """A queue of the processes' broker ("celery", the task queue, unless named), read
    through kombu, on Redis or RabbitMQ alike."""

    def __init__(self, project_env, name="celery"):
        self.project_env = project_env  # read at each call: a test may point it elsewhere
        self.name = name

    def _queue_do(self, action):
        with Connection(self.project_env["CELERY_BROKER_URL"]) as connection:
            return action(Queue(self.name).bind(connection.default_channel))

    def waiting(self):
        """How many messages wait to be taken by a worker."""

        def count(queue):
            try:
                return queue.queue_declare(passive=True).message_count
            except (ChannelError, NotFound):  # no such queue yet (Redis, RabbitMQ)
                return 0

        return self._queue_do(count)

    def take(self):
        """(task name, args) of each waiting message, oldest first, taking them out."""

        def drain(queue):
            taken = []
            try:
                while (message := queue.get(no_ack=True)) is not None:
                    taken.append((message.headers["task"], message.decode()[0]))
            except NotFound:  # RabbitMQ: nothing declared it yet
                pass
            except InternalError as error:
                # RabbitMQ: a quorum queue just declared, whose process is not up yet
                # ("noproc"); nothing can be taken from it so far.
                if "noproc" not in str(error):
                    raise
            return taken

        return self._queue_do(drain)


@pytest.fixture
def task_queue(project_env):
    return TaskQueue(project_env)


@pytest.fixture
def mail_queue(project_env):
    """The queue of the emails' batches."""
    return TaskQueue(project_env, settings.MAIL_QUEUE)


def celery_call(project_env, task, *args, **options):
    """`celery call` of task(*args), with its options (e.g. countdown=6), as an operator
    runs it; what it prints: the task's id."""
    argv = [*procfile_command("worker")[:3], "call", task, f"--args={json.dumps(args)}"]
    argv += [f"--{option}={value}" for option, value in options.items()]
    done = subprocess.run(argv, cwd=BASE_DIR, env=project_env, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(argv)} failed:\n{done.stdout}{done.stderr}"
    return done.stdout.strip()


def call(project_env, message, **options):
    """Send notify_customers(message) to the processes' broker as `celery call` does,
    with its options. To a Redis, from this process: the same send_task, by an app
    configured from the same settings for Redis, without a command's second of
    start-up. To RabbitMQ (or Sentinels, or keys under a prefix), through `celery call`
    itself: its app is configured for that broker (quorum queues, native delayed
    delivery, the prefix), this process's is not."""
    task, url = "playground.tasks.notify_customers", project_env["CELERY_BROKER_URL"]
    if urlsplit(url).scheme != "redis" or project_env.get("CELERY_BROKER_KEY_PREFIX"):
        celery_call(project_env, task, message, **options)
        return
    with celery_app.connection_for_write(url) as connection:
        celery_app.send_task(task, [message], connection=connection, **options)


def deliveries(database):
    """How many deliveries the database holds, by status."""
    by_status = Delivery.objects.using(database).values_list("status").annotate(Count("id"))
    return dict(by_status.order_by())


def pytest_generate_tests(metafunc):
    chosen = any(
        "stack" in (names if isinstance(names := m.args[0], list | tuple) else names.split(","))
        for m in metafunc.definition.iter_markers("parametrize")
    )
    if "stack" in metafunc.fixturenames and not chosen:  # a test may name its own stacks
        both = metafunc.definition.get_closest_marker("both_stacks")
        metafunc.parametrize("stack", STACKS if both else STACKS[:1], indirect=True)


def pytest_collection_modifyitems(items):
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "redis_server" in fixtures:
            item.add_marker(pytest.mark.slow)
        if "namespaces_allowed" in fixtures:
            item.add_marker(pytest.mark.hosts)
        if "stack_images" in fixtures:
            item.add_marker(pytest.mark.slow)
            item.add_marker(pytest.mark.compose)


def done_notifications(database):
    """How many notifications the database holds as done."""
    return Notification.objects.using(database).filter(status="done").count()


def wait_until_done(database, count=1, timeout=60):
    """Wait until `count` notifications are done, as the database says."""
    wait_until(lambda: done_notifications(database) >= count, timeout, f"{count} done")


def port_open(port, address="127.0.0.1"):
    try:
        socket.create_connection((address, port), timeout=0.5).close()
    except OSError:
        return False
    return True


def pool_processes(worker):
    """The pids of a worker's pool processes."""
    pid = worker.popen.pid
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


@pytest.fixture(autouse=True)
def forget_local_cache():
    caches["local"].clear()  # what this process remembers belongs to the test before


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    # Over TLS too (rediss://), for the tests of the transport over it.
    server = LocalRedis(free_port(), tmp_path_factory.mktemp("redis"), tls_port=free_port())
    try:
        server.start()
    except RedisUnavailable as why:
        pytest.fail(f"The tests need a real Redis and {why}: install redis-server.")
    # This process enqueues and caches there too, never on the machine's shared Redis.
    celery_app.conf.update(broker_url=server.url(BROKER_DB), result_backend=server.url(CACHE_DB))
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
def own_broker(stack, project_env, tmp_path, request):
    """A broker of the test's own, to stop and restart, the project's processes pointed at
    it: a Redis (which is then their cache too), or a RabbitMQ node."""
    if stack == SQLITE_REDIS:
        yield request.getfixturevalue("own_redis")
        return
    node = started(LocalRabbitMQ(free_port()), "RabbitMQ")
    project_env["CELERY_BROKER_URL"] = node.url("/")
    yield node
    node.remove()


def started(server, name):
    """The throwaway server, started; a test that cannot have it fails, saying why (not
    pytest.exit: in a test process of pytest-xdist's, that ends the process mid-test and
    the run reports only that it crashed)."""
    try:
        return server.start()
    except (PostgresUnavailable, RabbitMQUnavailable) as why:
        pytest.fail(f"The postgres-rabbitmq tests need {name} and {why}.")


@pytest.fixture
def namespaces_allowed():
    """Skips the test, in one line saying why and what runs it, where no host of its own
    can be made: without root, in a chroot or a container without the rights."""
    if why := why_unavailable():
        pytest.skip(
            f"its hosts are network namespaces, and here {why}: run the hosts lane as root"
            " on a machine or VM: sudo make test-hosts"
        )


@pytest.fixture
def network(namespaces_allowed):
    """Hosts of their own on one machine (harness/network.py), removed after the test."""
    network = Network()
    yield network
    network.remove()


@pytest.fixture
def network_redis(network, project_env, tmp_path):
    """A Redis on a host of its own: the project's processes' cache, results and Beat's
    lock, and their broker until the test names another."""
    server = LocalRedis(free_port(), tmp_path / "network-redis", host=network.host("redis"))
    server.start()
    project_env.update(redis_env(server))
    yield server
    server.stop()


@pytest.fixture
def database_host(network, project_env):
    """A host of its own running the database, PostgreSQL (migrated); the project's
    processes use it."""
    host = network.host("db")
    server = LocalPostgres(free_port(), host=host)
    try:  # removed however far it got: its host is gone after the test
        started(server, "PostgreSQL")
        project_env["DATABASE_URL"] = server.create_database("on_its_host")
        manage(project_env, "migrate", "--noinput")
        yield host
    finally:
        server.remove()


@pytest.fixture
def rabbitmq_cluster(network, network_redis, project_env):
    """Three RabbitMQ nodes clustered, each on a host of its own; the project's processes
    get the URL of every node, in a vhost of the test's own (and Redis on another host
    for results and the cache)."""
    cluster = RabbitMQCluster(network)
    try:  # removed however far it got: its hosts are gone after the test
        started(cluster, "a RabbitMQ cluster")
        project_env["CELERY_BROKER_URL"] = cluster.create_vhost("cluster")
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture
def redis_with_sentinels(network, project_env, tmp_path):
    """A Redis primary and its replica watched by three Sentinels, each on a host of its
    own; the project's processes reach Redis (broker, results, cache) through the
    Sentinels."""
    servers = RedisWithSentinels(network, tmp_path / "sentinels")
    try:  # stopped however far it got: its hosts are gone after the test
        servers.start()
        project_env.update(
            CELERY_BROKER_URL=servers.url(BROKER_DB),
            REDIS_CACHE_URL=servers.url(CACHE_DB),
            REDIS_SENTINEL_MASTER=servers.master,
        )
        yield servers
    finally:
        servers.stop()


@pytest.fixture
def start_worker_on(start, project_env, network):
    """Start a worker as the Procfile does, on a host of its own (or on `host`, beside
    another worker)."""

    def start_worker_on(name, *options, host=None):
        host = host or network.host(name)
        hostname, argv = worker_command(name, *options)
        worker = start(
            name, host.command(argv), ready=lambda: worker_answers(project_env, hostname)
        )
        return host, worker

    return start_worker_on


@pytest.fixture
def start_web_on(start, network, project_env):
    """Start the web server on a host of its own."""

    def start_web_on(name):
        host, port = network.host(name), free_port()
        project_env["ALLOWED_HOSTS"] = host.address
        argv = [sys.executable, "manage.py", "runserver", "--noreload", f"{host.address}:{port}"]
        ready = lambda: port_open(port, host.address)  # noqa: E731
        return start(name, host.command(argv), ready=ready, port=port, address=host.address)

    return start_web_on


def emails_per_customer(inbox):
    """How many emails each customer who got one got, fewest first."""
    return sorted(Counter(message["To"] for message in inbox.messages).values())


@pytest.fixture(scope="session")
def postgres_server():
    server = started(LocalPostgres(free_port()), "PostgreSQL")
    yield server
    server.remove()


@pytest.fixture(scope="session")
def migrated_template(postgres_server, redis_server, tmp_path_factory):
    """A PostgreSQL database migrated once; each test's database is a copy of it."""
    url = postgres_server.create_database("storefront_template")
    env = project_env_for(redis_server, tmp_path_factory.mktemp("template") / "unused.sqlite3")
    manage({**env, "DATABASE_URL": url}, "migrate", "--noinput")
    return "storefront_template"


@pytest.fixture(scope="session")
def rabbitmq_server():
    server = started(LocalRabbitMQ(free_port()), "RabbitMQ")
    yield server
    server.remove()


@pytest.fixture
def stack(request):
    """The stack the project's processes run on: SQLITE_REDIS or POSTGRES_RABBITMQ."""
    return request.param


@pytest.fixture
def project_env(stack, broker, redis_server, tmp_path, request):
    """The environment of the project's processes, on the throwaway Redis (emptied) and
    a database of the test's own (an SQLite file, or a PostgreSQL database) and, on
    postgres-rabbitmq, a RabbitMQ vhost of its own; a test may change it before
    starting them."""
    env = project_env_for(redis_server, tmp_path / "db.sqlite3")
    if stack == POSTGRES_RABBITMQ:
        name = f"test_{uuid.uuid4().hex[:12]}"
        postgres = request.getfixturevalue("postgres_server")
        rabbitmq = request.getfixturevalue("rabbitmq_server")
        template = request.getfixturevalue("migrated_template")
        env["DATABASE_URL"] = postgres.create_database(name, template=template)
        env["CELERY_BROKER_URL"] = rabbitmq.create_vhost(name)
        yield env
        postgres.drop_database(name)
        rabbitmq.delete_vhost(name)
    else:
        yield env


@pytest.fixture
def start(project_env, tmp_path):
    """Start a process of the project; every one is stopped when the test ends."""
    started = []

    def start(name, argv, ready=None, port=None, address="127.0.0.1"):
        """`ready`: a condition that holds once the process serves (no log line)."""
        process = ProjectProcess(argv, project_env, tmp_path / f"{name}.log", port, address)
        started.append(process)
        if ready:
            process.wait_until(ready)
        return process

    yield start
    for process in reversed(started):
        # Killed, not stopped: the test is over, and a worker's warm shutdown alone costs
        # 2-3 s (Celery's prefork pool joins its processes and its timer thread). What
        # it left in the broker and the database goes with the test's own part of them.
        process.kill()
        # Captured, so shown only when the test fails: what each process said.
        print(f"----- {process.argv}\n{process.log()[-6000:]}")


@pytest.fixture
def start_worker(start, project_env):
    """Start a Celery worker as the Procfile does, with extra options (e.g. --concurrency=1)."""

    def start_worker(name="worker", *options):
        hostname, argv = worker_command(name, *options)
        return start(name, argv, ready=lambda: worker_answers(project_env, hostname))

    return start_worker


def beside_playwright():
    """Lets this thread use the processes' database while Playwright's sync API runs an
    event loop in it, which Django takes for async code: the test's own connection, used
    by this thread alone, is safe all the same."""
    return patch.dict(os.environ, DJANGO_ALLOW_ASYNC_UNSAFE="true")


@pytest.fixture(scope="session")
def migrated_sqlite(redis_server, tmp_path_factory):
    """An SQLite database migrated once; each test's is a copy of it."""
    path = tmp_path_factory.mktemp("sqlite-template") / "db.sqlite3"
    manage(project_env_for(redis_server, path), "migrate", "--noinput")
    return path


@pytest.fixture
def database(project_env, django_db_blocker, request):
    """The processes' database, migrated; the name of this process's Django connection
    to it (`Model.objects.using(database)`). An SQLite file is a copy of one migrated
    once, as postgres-rabbitmq's database is (a database on a host of its own is
    migrated where it is made)."""
    alias = "processes"
    parsed = dj_database_url.parse(project_env["DATABASE_URL"])
    if parsed["ENGINE"] == "django.db.backends.sqlite3" and not Path(parsed["NAME"]).exists():
        shutil.copyfile(request.getfixturevalue("migrated_sqlite"), parsed["NAME"])
    # configure_settings fills in Django's defaults (it wants a "default" beside it).
    connections.settings[alias] = connections.configure_settings(
        {"default": parsed, alias: parsed}
    )[alias]
    with django_db_blocker.unblock():
        yield alias
        with beside_playwright():
            connections[alias].close()
    del connections[alias]
    del connections.settings[alias]


@pytest.fixture
def seed_customers(database):
    """Adds `count` customers to the processes' database, as `manage.py seed_customers`
    does (in this process: a command's start-up is not what any test is about)."""

    def seed_customers(count):
        with beside_playwright():
            call_command("seed_customers", count, database=database, stdout=io.StringIO())

    return seed_customers


class Inbox:
    """The test SMTP server's handler: keeps what it receives, and plays faults."""

    def __init__(self):
        self.messages = []
        self.received_at = []  # when each message was taken, by this server's clock
        self.delay = 0.0  # seconds before taking each message
        self.refusals = 0  # the next recipients to refuse with 451 (try again later)
        self.refused = set()  # addresses to refuse with 451 every time
        self.rejected = set()  # addresses to refuse for good (550)
        self.hold_at = None  # hold the message after this many, until release()
        self.held = 0  # connections waiting on a held answer
        self.port = None  # where it is served
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
        self.received_at.append(time.monotonic())
        self.messages.append(message_from_bytes(envelope.content))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_address(request):
    """Where the SMTP server listens: this machine's loopback, unless the test's project
    processes run on hosts of a test network (then this process's address there)."""
    if "network" in request.fixturenames:
        return request.getfixturevalue("network").address
    return "127.0.0.1"


@contextmanager
def serving(inbox, address="127.0.0.1"):
    """A real SMTP server (aiosmtpd) in this process, on a free port of `address`
    (`inbox.port`), handing what it receives to `inbox`."""
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd's every command
    inbox.port = free_port()
    controller = Controller(inbox, hostname=address, port=inbox.port)
    controller.start()
    try:
        yield inbox
    finally:
        inbox.release()
        controller.stop()


@pytest.fixture
def smtp_server(project_env, smtp_address):
    """A real SMTP server on a free port; the project's processes send to it."""
    with serving(Inbox(), smtp_address) as inbox:
        project_env.update(EMAIL_HOST=smtp_address, EMAIL_PORT=str(inbox.port))
        yield inbox


@pytest.fixture
def thirty_customers(project_env, seed_customers, smtp_server):
    """30 customers in batches of 10, and an SMTP server that will hold the 5th email."""
    project_env["NOTIFY_BATCH_SIZE"] = "10"
    seed_customers(30)
    smtp_server.hold_at = 4
    return smtp_server


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


@pytest.fixture(scope="session")
def collected_static(redis_server, tmp_path_factory, worker_id):
    """The static files collected into STATIC_ROOT as the image's build does, once for
    the run: every test process of it (pytest-xdist's) shares the clone's STATIC_ROOT,
    so the first collects, under a lock, and the others find it done."""
    run_dir = tmp_path_factory.getbasetemp()
    if worker_id != "master":  # the folder of the run, above each test process's own
        run_dir = run_dir.parent
    env = production(project_env_for(redis_server, run_dir / "unused.sqlite3"))
    with open(run_dir / "collectstatic.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (done := run_dir / "collectstatic.done").exists():
            manage(env, "collectstatic", "--noinput")
            done.touch()


@pytest.fixture
def prod_web(start, prod_env, collected_static):
    """The web service as the image builds it (collectstatic) and docker-compose.yml runs
    it (migrations, then gunicorn), on a free port."""
    port = free_port()
    prod_env["GUNICORN_CMD_ARGS"] = f"--bind 127.0.0.1:{port} --workers 2"
    argv = ["sh", "-c", compose_command("web")]
    return start("web", argv, ready=lambda: port_open(port), port=port)


@pytest.fixture
def start_beat(start, project_env, database, tmp_path):
    """Start Beat (on the processes' database: notify_customers goes through the
    outbox); it is ready once it holds its lock in the cache's Redis."""

    def holds_lock():
        with redis.Redis.from_url(project_env["REDIS_CACHE_URL"]) as client:
            return client.exists(SingleBeatScheduler.lock_name)

    def start_beat():
        argv = [*procfile_command("beat"), f"--schedule={tmp_path / 'celerybeat-schedule'}"]
        return start("beat", argv, ready=holds_lock)

    return start_beat


# The login of the Flower the tests start, as `requests` takes it (auth=FLOWER_LOGIN).
FLOWER_LOGIN = ("tester", "s3cret")


@pytest.fixture
def start_flower(start, project_env):
    """Start Flower on a free port, with the credentials in project_env['FLOWER_BASIC_AUTH']."""
    project_env["FLOWER_BASIC_AUTH"] = ":".join(FLOWER_LOGIN)

    def start_flower():
        port = free_port()
        argv = [*procfile_command("flower"), f"--port={port}"]

        def healthy():
            return port_open(port) and requests.get(f"http://127.0.0.1:{port}/healthcheck").ok

        return start("flower", argv, ready=healthy, port=port)

    return start_flower


@pytest.fixture
def flower(start_flower):
    return start_flower()


# --- docker-compose.yml, run for real (make test-compose; harness/stack.py) ----------


@pytest.fixture(scope="session")
def stack_images():
    """The project's image and the stand-ins for those the files start from, built once."""
    if why := why_podman_cannot_run():
        pytest.skip(why)
    build_images()


@pytest.fixture(scope="module")
def stack_inbox():
    """The SMTP server the stack mails to: on every address of this machine, which the
    containers reach as host.containers.internal."""
    with serving(Inbox(), "0.0.0.0") as inbox:
        yield inbox


@pytest.fixture(scope="module")
def start_stack(stack_images, stack_inbox, tmp_path_factory):
    """Start docker-compose.yml from an operator's .env (these values over the stack's
    defaults, which fill in every secret); each stack started is taken down with its
    volumes at the end of the module."""
    started = []

    def start_stack(**dot_env):
        folder = tmp_path_factory.mktemp("stack")
        https_port, http_port = free_ports(2)
        stack = Stack(folder, {
            "ALLOWED_HOSTS": f"localhost,127.0.0.1,{this_machines_address()}",
            "EMAIL_HOST": "host.containers.internal",
            "EMAIL_PORT": str(stack_inbox.port),
            "HTTPS_PORT": str(https_port),
            "HTTP_PORT": str(http_port),
            **dot_env,
        })  # fmt: skip
        started.append(stack)
        return stack.up()

    yield start_stack
    for stack in started:
        stack.down()


def this_machines_address():
    """An address of this machine other than loopback: a client connecting to it reaches
    the stack's published ports as itself, not masqueraded as the containers' gateway."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the route
        return probe.getsockname()[0]
