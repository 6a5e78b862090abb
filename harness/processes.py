"""The project's processes started as the Procfile starts them, each pointed at a
Redis and a database of the caller's: for the tests (conftest.py) and the benchmarks
(bench/)."""

import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
from contextlib import suppress
from pathlib import Path

import redis
from celery import Celery
from celery_guarantees.testing.waiting import NotYet, wait_until
from django.conf import settings
from kombu.exceptions import OperationalError

from storefront.settings.environment import BROKER_DB, CACHE_DB

BASE_DIR = Path(__file__).resolve().parent.parent

# The two stacks the processes run on in the tests and the benchmarks: the embedded
# default, and the scaled-out one (Redis beside it for results, the cache, Beat's lock).
SQLITE_REDIS, POSTGRES_RABBITMQ = STACKS = ("sqlite-redis", "postgres-rabbitmq")


def worker_answers(env, hostname):
    """Whether a worker with this hostname answers a ping through the processes' broker."""
    # Not the current app: this process keeps sending through storefront's.
    app = Celery(broker=env["CELERY_BROKER_URL"], set_as_current=False)
    options = app.conf.broker_transport_options = {}
    if master := env.get("REDIS_SENTINEL_MASTER"):  # a broker reached through Sentinel
        options["master_name"] = master
    if prefix := env.get("CELERY_BROKER_KEY_PREFIX"):  # the worker's control keys too
        options["global_keyprefix"] = prefix
    try:
        return bool(app.control.ping([hostname], timeout=0.5))
    except (OSError, redis.RedisError, OperationalError):  # a broker just restarted: not yet
        return False
    finally:
        app.close()


def procfile_command(process):
    """The command the Procfile gives a process, as an argv."""
    for line in (BASE_DIR / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == process:
            return shlex.split(command)
    raise KeyError(process)


def worker_command(name, *options):
    """(node name, argv) of the Procfile's worker as node `name`, consuming every task
    queue, as the course's `celery -A storefront worker` does, unless `options` name
    their own (`--queues=mail`: the last one given counts)."""
    hostname = f"{name}@{socket.gethostname()}"
    queues = f"--queues={','.join(settings.TASK_QUEUES)}"
    return hostname, [*procfile_command("worker"), queues, f"--hostname={hostname}", *options]


def redis_env(redis_server):
    """The variables that point the project's processes at this Redis."""
    return {
        "CELERY_BROKER_URL": redis_server.url(BROKER_DB),
        "REDIS_CACHE_URL": redis_server.url(CACHE_DB),
    }


def project_env_for(redis_server, database_path):
    """The environment of the project's processes, on this Redis and SQLite file."""
    venv_bin = str(Path(sys.executable).parent)
    return {
        **os.environ,
        "PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""),
        "DJANGO_SETTINGS_MODULE": "storefront.settings.dev",
        **redis_env(redis_server),
        "DATABASE_URL": f"sqlite:///{database_path}",
        "PYTHONUNBUFFERED": "1",
    }


def production(env, settings_module="storefront.settings.prod"):
    """`env` with production settings and the secrets they require."""
    return {
        **env,
        "DJANGO_SETTINGS_MODULE": settings_module,
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "EMAIL_HOST": "127.0.0.1",
    }


def manage(env, *args, check=True):
    """Run a manage.py command as the project's processes would; by default, fail on error."""
    argv = [sys.executable, "manage.py", *args]
    return subprocess.run(argv, cwd=BASE_DIR, env=env, check=check, capture_output=True, text=True)


class ProjectProcess:
    """One running process of the project, its output kept in a log file."""

    def __init__(self, argv, env, log_path, port=None, address="127.0.0.1"):
        self.argv, self.log_path, self.port, self.address = argv, log_path, port, address
        with open(log_path, "wb") as log:
            # A session of its own, so that nothing it leaves behind outlives the test.
            self.popen = subprocess.Popen(
                argv, cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def url(self, path):
        return f"http://{self.address}:{self.port}{path}"

    def log(self):
        return self.log_path.read_text(errors="replace")

    def wait_for(self, text, count=1, timeout=30):
        """Wait until `text` has appeared `count` times in the log: for a process that
        says it is ready, the only thing there is to observe."""
        wait_until(
            lambda: self.log().count(text) >= count or self.popen.poll() is not None,
            timeout,
            what=lambda: f"{text!r} {count}x in the log of {self.argv}:\n{self.log()}",
        )
        if self.log().count(text) < count:
            raise NotYet(f"{self.argv} exited ({self.popen.returncode}):\n{self.log()}")

    def wait_until(self, ready, timeout=30):
        """Wait until the condition `ready` holds; fail at once, with the log, if the
        process exits first."""
        wait_until(
            lambda: self.popen.poll() is not None or ready(),
            timeout,
            what=lambda: f"{self.argv} ready:\n{self.log()}",
        )
        if self.popen.poll() is not None:
            raise NotYet(f"{self.argv} exited ({self.popen.returncode}):\n{self.log()}")

    def stop(self, signum=signal.SIGTERM, timeout=30):
        """Stop it as a deploy would (SIGTERM to the main process); if it has not
        exited after `timeout` seconds, kill it and all its children."""
        if self.popen.poll() is None:
            self.popen.send_signal(signum)
            with suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout)
        self.kill()

    def kill(self):
        """Kill it and all its children at once (SIGKILL to its session's group)."""
        with suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait()
