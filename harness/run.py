"""Start the whole system in one terminal: the Procfile's processes, their output
interleaved and labelled by honcho, with a project-local Redis when none answers at the
cache's URL (REDIS_CACHE_URL: the Redis every broker needs, and development's broker too).

One Ctrl-C stops them all cleanly. Each process gets SIGINT, as each of the course's
commands gets it from a Ctrl-C in its own terminal: the worker takes no more messages and
waits for its running tasks (warm shutdown; Celery's pool processes ignore SIGINT and
finish them), the others exit at once. A second Ctrl-C is passed on too (the worker's
cold shutdown: running tasks get CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT, then go back to the
queue); a third kills whatever is left. (`honcho start` sent SIGTERM to every process
group, the worker's pool processes included, which cut their tasks off with a
WorkerLostError traceback each, and SIGKILL five seconds later.)

When a process stops by itself, the others are stopped the same way, and the exit status
is that process's (128 + N for a signal N, as a shell reports it). A stop asked for
(Ctrl-C, SIGTERM, SIGHUP) that went through exits with 0: the processes did what was
asked, and `make run` prints no "Error 130" under the last lines of the log.

A change to a Python file of the project restarts the workers and Beat, as `runserver`
restarts itself: each is stopped as at a Ctrl-C (a worker's warm shutdown lets its
running tasks finish) and started again. watchfiles watches the folders of the
project's code (RELOAD_WATCH names another: the tests' own); the environment, the
Procfile and the installed packages are read at start only.

The processes get this environment as it is: unlike `honcho start`, no `.env` is read,
since `.env` is the compose stack's (docs/operations.md, *Production and Docker
Compose*: the real mail server among others). PROCFILE names another Procfile, as for
honcho (the tests move its ports).

Run it as `make run` (`python -m harness.run`), which installs everything first."""

import os
import queue
import signal
import sys
import threading
from contextlib import suppress
from datetime import datetime
from pathlib import Path
from types import FrameType
from urllib.parse import urlparse

from celery_guarantees.testing.servers import RedisUnavailable
from django.conf import settings

# honcho ships no type hints.
from honcho import colour, environ, printer, process  # type: ignore[import-untyped]
from watchfiles import PythonFilter, watch

from harness.localredis import LocalRedis
from harness.processes import BASE_DIR
from storefront.health import redis_answers

LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}
HOW_TO_GET_REDIS = (
    "install it with your package manager (apt install redis-server, brew install redis) "
    "or run it with Docker as the course does: docker run -d -p 6379:6379 redis"
)
# What each Ctrl-C passes on to every process still running: the first two as a
# terminal would, the third for good.
CTRL_C_SIGNALS = (signal.SIGINT, signal.SIGINT, signal.SIGKILL)
# Stopping the run as Ctrl-C does: a `kill`, or the terminal closing.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
NAME = "run"
# The processes that run the project's code without reloading it themselves, and the
# folders of that code.
RELOADED = ("worker", "mailer", "beat")
WATCHED = [BASE_DIR / "storefront", BASE_DIR / "playground", BASE_DIR / "guarantees"]


def local_redis_for(redis_url):
    """A project-local redis-server for a Redis URL on this machine where nothing answers."""
    if redis_answers(redis_url):
        return None
    url = urlparse(redis_url)
    if url.scheme != "redis" or url.hostname not in LOCAL_HOSTS:
        sys.exit(f"No Redis answers at {redis_url}: start it there, or {HOW_TO_GET_REDIS}.")
    try:
        redis = LocalRedis(url.port or 6379, BASE_DIR / ".run" / "redis").start()
    except RedisUnavailable as why:
        sys.exit(f"No Redis answers at {redis_url} and {why}: {HOW_TO_GET_REDIS}.")
    print(f"run: started a local redis-server at {redis.url()} (data in .run/redis)")
    return redis


class Supervisor:
    """The Procfile's processes, each in a session of its own (honcho's Process), so that
    a Ctrl-C reaches them only as passed on here."""

    def __init__(self, procfile: Path, env: dict[str, str], watched: list[Path]) -> None:
        self.commands = environ.parse_procfile(procfile.read_text()).processes
        self.env = env
        self.watched = watched
        colours = colour.get_colours()
        self.colours = {name: next(colours) for name in self.commands}
        self.processes = {name: self.process(name) for name in self.commands}
        self.printer = printer.Printer(sys.stdout, width=max(map(len, [*self.commands, NAME])))
        self.events: queue.Queue[printer.Message] = queue.Queue()
        self.pids: dict[str, int] = {}
        self.returncodes: dict[str, int] = {}
        self.returncode: int | None = None
        # Counted by the signal handler, acted on by the loop: a handler that printed
        # could interrupt a print of the loop's and fail.
        self.ctrl_c = self.passed_on = 0
        # Stopped to be started again with the code as it is now.
        self.restarting: set[str] = set()

    def process(self, name: str) -> process.Process:
        return process.Process(
            self.commands[name], name=name, colour=self.colours[name], env=self.env, cwd=BASE_DIR
        )

    def start(self, name: str) -> None:
        threading.Thread(target=self.processes[name].run, args=(self.events,), daemon=True).start()

    def run(self) -> int:
        for signum in STOP_SIGNALS:
            signal.signal(signum, self.on_stop_signal)
        for name in self.processes:
            self.start(name)
        threading.Thread(target=self.watch, daemon=True).start()
        while len(self.returncodes) < len(self.processes):
            self.pass_on_ctrl_c()
            with suppress(queue.Empty):
                self.on(self.events.get(timeout=0.1))
        return self.returncode or 0

    def on_stop_signal(self, _signum: int, _frame: FrameType | None) -> None:
        if self.returncode is None:
            self.returncode = 0
        self.ctrl_c += 1

    def pass_on_ctrl_c(self) -> None:
        while self.passed_on < self.ctrl_c:
            signum = CTRL_C_SIGNALS[min(self.passed_on, len(CTRL_C_SIGNALS) - 1)]
            self.passed_on += 1
            self.say(f"stopping: {signum.name} to every process")
            for name in self.pids:
                self.send(name, signum)

    def watch(self) -> None:
        """Post each batch of changed Python files to the loop."""
        for changes in watch(*self.watched, watch_filter=PythonFilter(), raise_interrupt=False):
            paths = sorted({Path(path) for _, path in changes})
            self.events.put(printer.Message("changed", paths, datetime.now(), NAME, None))

    def reload(self, paths: list[Path]) -> None:
        names = [name for name in RELOADED if name in self.pids and name not in self.returncodes]
        if self.passed_on or not names:  # stopping: nothing starts again
            return
        shown = ", ".join(path.name for path in paths[:3])
        self.say(f"{shown} changed: restarting {' and '.join(names)}")
        for name in names:
            if name not in self.restarting:
                self.restarting.add(name)
                self.send(name, CTRL_C_SIGNALS[0])

    def on(self, message: printer.Message) -> None:
        if message.type == "changed":
            self.reload(message.data)
        elif message.type == "line":
            self.printer.write(message)
        elif message.type == "start":
            self.pids[message.name] = message.data["pid"]
            self.say(f"{message.name} started (pid={message.data['pid']})")
            if self.passed_on:  # started after the Ctrl-C: it stops too
                self.send(message.name, CTRL_C_SIGNALS[self.passed_on - 1])
        elif message.type == "stop" and message.name in self.restarting and not self.passed_on:
            self.restarting.discard(message.name)
            self.say(f"{message.name} stopped (rc={message.data['returncode']}), starting again")
            self.processes[message.name] = self.process(message.name)
            self.start(message.name)
        elif message.type == "stop":
            self.restarting.discard(message.name)
            self.returncodes[message.name] = message.data["returncode"]
            self.say(f"{message.name} stopped (rc={message.data['returncode']})")
            if self.returncode is None:
                returncode = message.data["returncode"]
                self.returncode = 128 - returncode if returncode < 0 else returncode
                self.ctrl_c += 1  # the others stop as at Ctrl-C

    def send(self, name: str, signum: signal.Signals) -> None:
        if name in self.returncodes:
            return
        # Its whole process group, as a terminal signals the job in front: the command
        # and the shell around it. It may have exited since.
        with suppress(ProcessLookupError):
            os.killpg(self.pids[name], signum)

    def say(self, line: str) -> None:
        self.printer.write(printer.Message("line", line, datetime.now(), NAME, None))


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "storefront.settings.dev")
    (BASE_DIR / ".run").mkdir(exist_ok=True)  # the local Redis's data and the dev mailbox
    redis = local_redis_for(settings.REDIS_CACHE_URL)
    venv_bin = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": venv_bin + os.pathsep + os.environ.get("PATH", "")}
    procfile = BASE_DIR / os.environ.get("PROCFILE", "Procfile")
    watched = [Path(os.environ["RELOAD_WATCH"])] if "RELOAD_WATCH" in os.environ else WATCHED
    try:
        return Supervisor(procfile, env, watched).run()
    finally:
        if redis:
            redis.stop()
            print("run: stopped the local redis-server")


if __name__ == "__main__":
    sys.exit(main())
