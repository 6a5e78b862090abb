"""A throwaway PostgreSQL server of the tests' own: started, stopped, killed and
restarted by the tests, never the machine's shared one on 5432.

Measured here (2 cores, PostgreSQL 15): initdb + start 1.5 to 2 s, a restart 0.2 to
0.5 s, CREATE DATABASE from a small template 0.05 to 0.2 s, a kill 0.04 s."""

import os
import shutil
import signal
import subprocess
import tempfile
from contextlib import suppress
from pathlib import Path
from urllib.parse import quote

import psycopg
from celery_guarantees.testing.waiting import NotYet, wait_until
from psycopg import sql

from harness.network import Host, on

USER = "postgres"

SETTINGS = {
    "listen_addresses": "127.0.0.1",
    # ~10 processes of the project, each with a pool of 4, plus the tests' own.
    "max_connections": "200",
    # A throwaway server: durability across an OS crash buys nothing here, and
    # fsync dominates the time of a test that writes. A killed server still
    # recovers, as these writes are in the OS's page cache.
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}


class PostgresUnavailable(RuntimeError):
    pass


def bin_dir() -> Path:
    """Debian's postgresql keeps initdb and pg_ctl off PATH, one directory per version:
    take the newest; elsewhere, the ones on PATH."""
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0,
    )
    if debian:
        return debian[-1].parent
    on_path = shutil.which("initdb")
    if on_path is None:
        raise PostgresUnavailable(
            "initdb is not installed (none in /usr/lib/postgresql/*/bin, none on PATH): "
            "apt-get install postgresql"
        )
    return Path(on_path).resolve().parent


def as_user(user: str) -> list[str]:
    """The argv prefix that runs a command as `user` when we are root (initdb refuses
    root); as ourselves otherwise."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--"]


def chown(path: Path, user: str) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, user, user)


def _stat(pid: str) -> tuple[str, int]:
    """A process's state and parent, from "pid (comm) state ppid ..." (comm may hold
    spaces and parentheses)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return fields[0], int(fields[1])


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie does not)."""
    try:
        return _stat(str(pid))[0] != "Z"
    except FileNotFoundError:
        return False


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if _stat(entry.name)[1] == pid:
                    found.append(int(entry.name))
            except (FileNotFoundError, ProcessLookupError):
                continue
    return found


class LocalPostgres:
    def __init__(self, port: int, data_dir: Path | None = None, host: Host | None = None):
        """On this machine's loopback, or on a `host` of a harness.network.Network."""
        self.port = port
        self.host = host
        self.address = host.address if host else "127.0.0.1"
        # Under /tmp, not pytest's tmp_path: that is 0700 root's, which postgres
        # cannot traverse.
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="storefront-postgres-"))
        self.log_path = self.data_dir / "postgres.log"

    def url(self, database: str) -> str:
        return f"postgres://{USER}@{self.address}:{self.port}/{quote(database, safe='')}"

    def start(self, timeout: float = 30) -> "LocalPostgres":
        bin_ = bin_dir()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(bin_)
        argv = [*as_user(USER), str(bin_ / "pg_ctl"), "start", "-D", str(self.data_dir)]
        argv += ["-l", str(self.log_path), "-w", "-t", str(int(timeout))]
        argv += ["-o", f"-p {self.port} -h {self.address}"]
        # Its own session: the Ctrl-C meant for the other processes must not stop
        # the database under them (pg_ctl also detaches the postmaster itself).
        done = subprocess.run(
            on(self.host, argv), capture_output=True, text=True, start_new_session=True
        )
        if done.returncode != 0:
            raise PostgresUnavailable(
                f"pg_ctl start failed: {done.stdout}{done.stderr}{self.log()}"
            )
        try:
            wait_until(self.answers, timeout, what=f"PostgreSQL on {self.port}")
        except NotYet as error:
            self.stop()
            raise PostgresUnavailable(f"{error}: {self.log()}") from None
        return self

    def _initdb(self, bin_: Path) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        chown(self.data_dir, USER)
        argv = [*as_user(USER), str(bin_ / "initdb"), "-D", str(self.data_dir), "-U", USER]
        argv += ["--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync"]
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0:
            raise PostgresUnavailable(f"initdb failed: {done.stdout}{done.stderr}")
        # The socket in the data directory: /var/run/postgresql is the shared server's.
        settings = {**SETTINGS, "unix_socket_directories": str(self.data_dir)}
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write("\n# harness/localpostgres.py\n")
            for name, value in settings.items():
                conf.write(f"{name} = '{value}'\n")
        if self.host:  # reached from the test network's other hosts
            with open(self.data_dir / "pg_hba.conf", "a") as hba:
                hba.write("host all all samenet trust\n")

    def answers(self) -> bool:
        try:
            with psycopg.connect(self.url("postgres"), connect_timeout=1) as connection:
                connection.execute("SELECT 1")
        except psycopg.OperationalError:
            return False
        return True

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def postmaster_pid(self) -> int | None:
        """The running postmaster's pid, or None."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (FileNotFoundError, IndexError, ValueError):
            return None
        return pid if alive(pid) else None

    def stop(self) -> None:
        """Shut down as an operator would: fast, rolling back open transactions."""
        if self.postmaster_pid() is None:
            return
        argv = [*as_user(USER), str(bin_dir() / "pg_ctl"), "stop", "-D", str(self.data_dir)]
        subprocess.run([*argv, "-m", "fast", "-w"], capture_output=True, check=True)

    def kill(self) -> None:
        """Die as in a crash: the postmaster and its children at once. The postmaster
        alone would leave backends running (each in a process group of its own), holding
        the shared memory a restart needs, until they notice."""
        pid = self.postmaster_pid()
        if pid is None:
            return
        # Stopped, it forks no child between the listing and the kill.
        os.kill(pid, signal.SIGSTOP)
        doomed = [pid, *children(pid)]
        for each in doomed:
            with suppress(ProcessLookupError):
                os.kill(each, signal.SIGKILL)
        wait_until(
            lambda: not any(alive(each) for each in doomed), 10, what=f"the end of postmaster {pid}"
        )
        # The dead postmaster is init's to reap (here within 2 s, under a container
        # without one never): until then its pid exists, and the lock files naming it
        # would make the next start believe the server still runs.
        for lock in [self.data_dir / "postmaster.pid", *self.data_dir.glob(".s.PGSQL.*.lock")]:
            lock.unlink(missing_ok=True)

    def _admin(self, statement: sql.Composed) -> None:
        with psycopg.connect(self.url("postgres"), autocommit=True) as connection:
            connection.execute(statement)

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create `name` (a copy of `template` if given: it must have no connections)."""
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        self._admin(statement)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop `name`, ending its connections; a database already gone is fine."""
        self._admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def remove(self) -> None:
        try:
            self.stop()
        finally:
            self.kill()  # whatever a failed stop left running
            shutil.rmtree(self.data_dir, ignore_errors=True)
