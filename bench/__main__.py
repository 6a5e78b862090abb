"""make bench: the web path, the queue path and the job, each measured against a
baseline run in this same script on this same machine; one table at the end.

The job runs on both stacks the tests run on; the page and the queue path measure
Celery against raw redis-py, so they run on SQLite + Redis only. Each stack runs in a
process of its own (`python -m bench --stack STACK SECTION...`, which prints its rows
as JSON), as Django is set up once per process.

Not part of the tests: these machines are shared and noisy, so only the ratios mean
much, and only within one run."""

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import django

from bench.stage import Stage
from harness.processes import BASE_DIR, POSTGRES_RABBITMQ, SQLITE_REDIS

# The measured page, written by a whole run from its template's fixed text.
PAGE = BASE_DIR / "docs" / "measured.md"
TEMPLATE = Path(__file__).with_name("measured.md")

WORKER_VARIANTS = [
    ("1 process", 1, []),
    ("2 processes", 2, []),
    ("2 processes, --without-gossip/mingle/heartbeat", 2,
     ["--without-gossip", "--without-mingle", "--without-heartbeat"]),
    ("2 processes, --prefetch-multiplier=4", 2, ["--prefetch-multiplier=4"]),
    ("1 thread, --pool=threads", 1, ["--pool=threads"]),
    ("4 threads, --pool=threads", 4, ["--pool=threads"]),
]  # fmt: skip


VERSIONS_SHOWN = ["celery", "kombu", "redis", "django", "aiosmtpd"]

# The transports of REDIS_TRANSPORT: the package's (the default) and stock kombu's.
PACKAGE, STOCK = "guarantees", "kombu"
TRANSPORT_NAMES = {PACKAGE: "package", STOCK: "stock kombu"}
# Sections run with both, each row named with its transport: the package's README
# compares the two from these rows.
COMPARED = ["delay", "throughput", "latency"]

# (stack, transport, sections); the queue path again with stock kombu's Redis transport.
RUNS = [
    (SQLITE_REDIS, PACKAGE, ["page", *COMPARED, "job", "mail_queue", "hosts", "failover", "kills"]),
    (SQLITE_REDIS, STOCK, COMPARED),
    (POSTGRES_RABBITMQ, PACKAGE, ["job"]),
]


def main():
    if sys.argv[1:2] == ["--stack"]:
        print(json.dumps(measure(sys.argv[2], sys.argv[3], sys.argv[4:])))
        return
    chosen = sys.argv[1:]  # e.g. `python -m bench page job`; all of them by default
    started = time.monotonic()
    if (not chosen or "page" in chosen) and not shutil.which("wrk"):
        sys.exit("The page benchmark needs wrk (the Debian package wrk): `make bench` installs it.")
    rows = []
    for stack, transport, sections in RUNS:
        here = [name for name in sections if name in chosen or not chosen]
        if here:
            argv = [sys.executable, "-m", "bench", "--stack", stack, transport, *here]
            rows += json.loads(subprocess.run(argv, check=True, stdout=subprocess.PIPE).stdout)
    print(table(rows))
    if not chosen:  # the whole bench: its figures are the measured page's
        PAGE.write_text(page(rows, time.monotonic() - started))
        print(f"Wrote {PAGE.relative_to(BASE_DIR)}")


def measure(stack, transport, chosen):
    stage = Stage(stack)
    stage.env["REDIS_TRANSPORT"] = transport
    os.environ.update(stage.env)  # this process enqueues and reads the same broker and database
    django.setup()
    # Read into the settings now. Left in the environment, Celery would take it over the
    # broker of any other app made here (celery/app/utils.py: broker_url).
    del os.environ["CELERY_BROKER_URL"]
    from bench import failover, hosts, job, kills, mail_queue, page, queue

    sections = {
        "page": page.page,
        "delay": queue.delay_cost,
        # The worker's options are compared on the package's transport only.
        "throughput": lambda stage: queue.throughput(
            stage, WORKER_VARIANTS if transport == PACKAGE else WORKER_VARIANTS[:2]
        ),
        "latency": queue.latency,
        "job": job.notification,
        "mail_queue": mail_queue.small_task_latency,
        "hosts": hosts.worker_hosts,
        "failover": failover.failovers,
        "kills": kills.whole_worker_kills,
    }
    try:
        rows = []
        for name in chosen:
            for each in sections[name](stage):
                rows.append(named(each, transport) if name in COMPARED else each)
        return rows
    finally:
        stage.close()


def named(row, transport):
    """`row` with the transport it was measured on in its name, or before its note."""
    name = TRANSPORT_NAMES[transport]
    if "detail" in row:
        return {"detail": f"{name}: {row['detail']}"}
    return {**row, "measure": f"{row['measure']} ({name})"}


def machine():
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    models = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
    cpu = models[0] if models else platform.processor()
    return [
        f"Machine: {os.cpu_count()} cores, {cpu}, Python {sys.version.split()[0]}",
        "Versions: " + ", ".join(f"{name} {version(name)}" for name in VERSIONS_SHOWN),
    ]


def figures(rows):
    """The table's lines, and the notes the sections print under it."""
    lines = ["| measure | figure | baseline | ratio |", "| --- | ---: | ---: | ---: |"]
    notes = []
    for row in rows:
        if "detail" in row:
            notes.append(row["detail"])
            continue
        unit = row["unit"]
        lines.append(
            f"| {row['measure']} | {row['figure']:,.1f} {unit} | {row['baseline']:,.1f} {unit} "
            f"| {row['ratio']:.2f}x |"
        )
    return lines, notes


def table(rows):
    lines, notes = figures(rows)
    return "\n".join([*machine(), "", *lines, "", *notes])


def page(rows, seconds):
    """The measured page: the template's fixed text around this run's figures."""
    commit = git("rev-parse", "--short", "HEAD")
    if git("status", "--porcelain", "--untracked-files=no"):
        commit += " with uncommitted changes"
    lines, notes = figures(rows)
    when = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    run = [
        f"{when}, `make bench` at {commit}, {seconds / 60:.0f} min.",
        "",
        *(f"- {line}" for line in machine()),
        "",
        *lines,
        "",
        "```text",
        *notes,
        "```",
    ]
    return TEMPLATE.read_text().replace("{run}", "\n".join(run))


def git(*args):
    done = subprocess.run(["git", *args], cwd=BASE_DIR, capture_output=True, text=True, check=True)
    return done.stdout.strip()


if __name__ == "__main__":
    main()
