"""The floors: raw redis-py and smtplib doing what Celery does, with nothing else.
Run as a separate process (`python -m bench.floor MODE TARGET N [EMAIL_FILE]`), like a
worker."""

import smtplib
import sys
import time
from pathlib import Path

import redis


def drain(url, count):
    """BRPOP `count` messages off the celery queue, counting each (one INCR, as the
    bench's tally task does)."""
    client = redis.Redis.from_url(url)
    for _ in range(count):
        client.brpop("celery")
        client.incr("bench:done")


def echo(url, count):
    """For each message, report how long after its timestamp it was taken."""
    client = redis.Redis.from_url(url)
    for _ in range(count):
        _, sent_at = client.brpop("bench:floor")
        client.rpush("bench:latency", time.time() - float(sent_at))


def mail(host_port, count, email_path):
    """Send `count` emails (the bytes in the file `email_path`) over one SMTP
    connection; print the seconds it took and the CPU seconds (user and system) this
    process used meanwhile."""
    host, port = host_port.split(":")
    message = Path(email_path).read_bytes()
    started, cpu = time.perf_counter(), time.process_time()
    with smtplib.SMTP(host, int(port)) as smtp:
        for n in range(count):
            smtp.sendmail("from@storefront.local", [f"customer{n}@example.com"], message)
    print(time.perf_counter() - started, time.process_time() - cpu)


if __name__ == "__main__":
    mode, target, count, *more = sys.argv[1:]
    {"drain": drain, "echo": echo, "mail": mail}[mode](target, int(count), *more)
