"""The page under load: /playground/hello/ served as in production (gunicorn, prod
settings), against a page of the same server that renders the same template without
queueing anything. wrk makes the load from this machine."""

import re
import subprocess

from celery_guarantees.testing.servers import free_port

from bench.stage import row
from harness.processes import production
from playground.models import Notification

SECONDS = 10
CONNECTIONS = 32


def page(stage):
    env = production(stage.env, settings_module="bench.settings")
    stage.manage("collectstatic", "--noinput", env=env)
    port = free_port()
    env["GUNICORN_CMD_ARGS"] = f"--bind 127.0.0.1:{port} --access-logfile=/dev/null"
    stage.start("gunicorn", ["gunicorn", "storefront.wsgi"], ready="Booting worker", env=env)
    base = f"http://127.0.0.1:{port}"
    load(f"{base}/bench/hello-baseline/", seconds=2)  # warm every gunicorn worker
    baseline = load(f"{base}/bench/hello-baseline/")
    hello = load(f"{base}/playground/hello/")
    notifications = Notification.objects.count()
    Notification.objects.all().delete()  # never run here: it would hold back the job's
    queued = stage.broker.llen("celery")
    stage.stop_all()
    rows = [row("page /playground/hello/", hello["rps"], baseline["rps"], "req/s")]
    for p in ("50", "99"):
        rows.append(row(f"page latency p{p}", hello[p], baseline[p], "ms", lower_is_better=True))
    if (notifications, queued) != (1, 1):  # the rush must start exactly one
        raise RuntimeError(f"the page started {notifications} and queued {queued} message(s)")
    rows.append(
        {
            "detail": f"{hello['requests']} requests of the page started 1 notification "
            "and queued 1 message: the page starts one and shows it until it is done "
            "(no worker ran here)"
        }
    )
    return rows


def load(url, seconds=SECONDS):
    """wrk's requests/s and p50/p99 latency (ms) for `url`, over HTTPS as the proxy says."""
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{CONNECTIONS}",
            f"-d{seconds}s",
            "--latency",
            "-H",
            "X-Forwarded-Proto: https",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if re.search(r"Non-2xx or 3xx responses", out):
        raise RuntimeError(f"{url} answered errors under load:\n{out}")
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "50": milliseconds(re.search(r"^\s+50%\s+(\S+)", out, re.MULTILINE).group(1)),
        "99": milliseconds(re.search(r"^\s+99%\s+(\S+)", out, re.MULTILINE).group(1)),
    }


def milliseconds(text):
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 1e-3, "ms": 1, "s": 1e3}[unit]
