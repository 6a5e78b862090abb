"""Logs an operator can ship (storefront/logs.py): LOG_FORMAT=json gives one JSON object
per line in the worker, Beat, Flower and the web, a task's lines name the task, a
traceback stays inside its line; the plain format is one format; a bad Host header is
one line; errors reach Sentry only when SENTRY_DSN is set. The processes are real; a
local HTTP server stands in for Sentry."""

import gzip
import json
import logging
import re
import socket
import sys
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from celery.schedules import crontab
from celery_guarantees.testing.servers import free_port

from conftest import celery_call, queued_tasks, wait_until
from harness.processes import manage
from storefront.logs import in_whole_minutes, logging_config

NOTIFY = "playground.tasks.notify_customers"
FINISH = "playground.tasks.finish_notification"
# Its id is no UUID: the task raises a ValidationError looking the notification up.
MALFORMED_ID = "not-a-uuid"

PLAIN_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ [\w.]+: ")
# `[2026-01-05 10:00:00,000: INFO/ForkPoolWorker-4]`: Celery's own format.
CELERY_LINE = re.compile(r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}: [A-Z]+/[\w-]+\]")


def lines(process):
    """The process's complete, non-empty log lines."""
    log = process.log()
    return [line for line in log[: log.rfind("\n") + 1].splitlines() if line.strip()]


def as_json(line):
    try:
        record = json.loads(line)
    except ValueError:
        record = None
    assert isinstance(record, dict), f"not one JSON object: {line!r}"
    return record


def records(process):
    """Each line of the process's log as the JSON object it must be."""
    return [as_json(line) for line in lines(process)]


@pytest.fixture
def json_logs(project_env):
    """The processes started after this log in JSON."""
    project_env["LOG_FORMAT"] = "json"


@pytest.fixture
def plain_logs(project_env):
    project_env["LOG_FORMAT"] = "plain"


@pytest.fixture(params=["plain", "json"])
def log_format(request, project_env):
    project_env["LOG_FORMAT"] = request.param


# In process: the configuration itself.


def formatter(log_format):
    """The formatter logging_config gives `log_format`, built as dictConfig builds it."""
    spec = dict(logging_config(log_format, "INFO")["formatters"][log_format])
    return spec.pop("()")(**spec)


def failed_record():
    try:
        raise ValueError("the notification's id is malformed")
    except ValueError:
        return logging.makeLogRecord(
            {"name": "playground.tasks", "levelname": "ERROR", "levelno": logging.ERROR,
             "msg": "Task failed", "exc_info": sys.exc_info()}
        )  # fmt: skip


def test_a_json_line_holds_its_traceback():
    line = formatter("json").format(failed_record())

    record = as_json(line)
    assert "\n" not in line
    assert (record["level"], record["logger"], record["message"]) == (
        "ERROR",
        "playground.tasks",
        "Task failed",
    )
    assert record["exc_info"].startswith("Traceback (most recent call last):\n")
    assert "ValueError: the notification's id is malformed" in record["exc_info"]


def test_a_plain_task_line_names_the_task_as_celery_did():
    record = logging.makeLogRecord(
        {"name": "playground.tasks", "levelname": "INFO", "msg": "Hello",
         "task_name": NOTIFY, "task_id": "1234"}
    )  # fmt: skip

    line = formatter("plain").format(record)

    assert PLAIN_LINE.match(line)
    assert line.endswith(f"INFO playground.tasks: {NOTIFY}[1234]: Hello")


def test_an_unknown_log_format_stops_the_process_naming_log_format():
    with pytest.raises(SystemExit) as stopped:
        logging_config("xml", "INFO")

    assert str(stopped.value) == (
        "storefront: the environment variable LOG_FORMAT is 'xml'; it must be plain or json."
    )


# With the real processes.


def test_every_line_of_a_json_worker_is_an_object_and_a_task_line_names_its_task(
    json_logs, project_env, database, start_worker
):
    worker = start_worker()

    task_id = celery_call(project_env, NOTIFY, "Hello")
    worker.wait_for("Emails were successfully sent!")

    task_lines = [record for record in records(worker) if record.get("task_id") == task_id]
    assert {record["task_name"] for record in task_lines} == {NOTIFY}
    assert "Hello" in [record["message"] for record in task_lines]


def test_a_task_error_is_one_json_line_with_its_traceback(
    json_logs, project_env, database, start_worker
):
    worker = start_worker()

    task_id = celery_call(project_env, FINISH, MALFORMED_ID)
    worker.wait_for("raised unexpected")

    errors = [record for record in records(worker) if record["level"] == "ERROR"]
    assert [(record["task_name"], record["task_id"]) for record in errors] == [(FINISH, task_id)]
    assert errors[0]["exc_info"].startswith("Traceback (most recent call last):")
    assert "ValidationError" in errors[0]["exc_info"]


def test_the_plain_worker_log_has_one_format_and_celerys_task_lines(
    plain_logs, project_env, database, start_worker
):
    worker = start_worker()

    task_id = celery_call(project_env, NOTIFY, "Hello")
    worker.wait_for("Emails were successfully sent!")

    log = lines(worker)
    assert [line for line in log if CELERY_LINE.match(line)] == []
    naming_the_task = [line for line in log if task_id in line]
    assert len(naming_the_task) >= 4  # received, "Sending 0 emails...", "Hello", succeeded
    assert [line for line in naming_the_task if line.count(task_id) > 1] == []  # named once
    assert all(PLAIN_LINE.match(line) for line in naming_the_task), naming_the_task
    assert f" INFO playground.tasks: {NOTIFY}[{task_id}]: Hello" in "\n".join(log)


def test_every_line_of_a_json_beat_is_an_object(json_logs, project_env, broker, start_beat):
    project_env["NOTIFY_CUSTOMERS_EVERY"] = "0.5"

    beat = start_beat()
    demo = (NOTIFY, ["Hello World"])
    wait_until(lambda: queued_tasks(broker).count(demo) >= 2, what="2 demo messages queued")

    messages = [record["message"] for record in records(beat)]
    assert "beat: Starting..." in messages
    assert f"Scheduler: Sending due task notify_customers ({NOTIFY})" in messages


def test_every_line_of_a_json_flower_is_an_object(json_logs, flower):
    messages = [record["message"] for record in records(flower)]

    assert any(message.startswith("Visit me at http://") for message in messages)


def test_the_web_logs_its_requests_in_json(json_logs, prod_web):
    requests.get(prod_web.url("/healthz"), timeout=5)
    requests.get(prod_web.url("/playground/hello/"), headers={"Host": "evil.example"}, timeout=5)
    wait_until(lambda: prod_web.log().count("GET /") >= 2, what="two requests in the web's log")

    served = [line for line in lines(prod_web) if "GET /" in line or "evil.example" in line]
    loggers = sorted(as_json(line)["logger"] for line in served)
    assert loggers == ["django.security.DisallowedHost", "gunicorn.access", "gunicorn.access"]


def test_a_bad_host_is_one_warning_line_without_a_traceback(log_format, prod_web):
    response = requests.get(
        prod_web.url("/playground/hello/"), headers={"Host": "evil.example"}, timeout=5
    )
    wait_until(lambda: "GET /playground/hello/" in prod_web.log(), what="the request's access line")

    assert response.status_code == 400
    about_it = [line for line in lines(prod_web) if "evil.example" in line]
    assert len(about_it) == 1, about_it
    assert "WARNING" in about_it[0]
    assert "Traceback" not in prod_web.log()


def test_a_body_over_the_limit_gets_413_unread_and_one_warning_line(log_format, prod_web):
    # Only the start of the 10 MB it announces: the answer must not wait for the rest.
    request = (
        b"POST /admin/login/ HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10000000\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n\r\nusername=admin"
    )
    with socket.create_connection((prod_web.address, prod_web.port), timeout=5) as client:
        client.sendall(request)
        status_line = client.recv(1024).split(b"\r\n")[0]
    wait_until(lambda: "POST /admin/login/" in prod_web.log(), what="the request's access line")

    assert status_line == b"HTTP/1.1 413 Request Entity Too Large"
    about_it = [line for line in lines(prod_web) if "10000000 bytes" in line]
    assert len(about_it) == 1, about_it
    assert "WARNING" in about_it[0]
    assert "Traceback" not in prod_web.log()


# Sentry.


SENTRY_CLIENT_ACTIVE = "import sentry_sdk; print(sentry_sdk.get_client().is_active())"


class SentryStandIn(ThreadingHTTPServer):
    """Takes what a Sentry SDK sends, as Sentry's envelope endpoint would."""

    def __init__(self):
        self.envelopes: list[bytes] = []
        super().__init__(("127.0.0.1", free_port()), EnvelopeHandler)

    def dsn(self):
        return f"http://public@127.0.0.1:{self.server_port}/1"

    def received(self, text):
        return any(text.encode() in envelope for envelope in self.envelopes)

    def check_ins(self):
        """The cron monitors' check-ins received: (monitor, status) each."""
        found = []
        for envelope in self.envelopes:
            # A header line, then each item: its header line, its payload line.
            lines = envelope.split(b"\n")[1:]
            for header, payload in zip(lines[::2], lines[1::2], strict=False):
                if json.loads(header).get("type") == "check_in":
                    check_in = json.loads(payload)
                    found.append((check_in["monitor_slug"], check_in["status"]))
        return found


class EnvelopeHandler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.server.envelopes.append(body)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass  # the SDK's requests are the test's business, not its output


@pytest.fixture
def sentry(project_env):
    server = SentryStandIn()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    project_env.pop("SENTRY_DSN", None)  # a developer's own never gets the tests' errors
    yield server
    server.shutdown()
    server.server_close()


def test_an_error_in_a_task_reaches_sentry(sentry, project_env, database, start_worker):
    project_env["SENTRY_DSN"] = sentry.dsn()
    start_worker()

    celery_call(project_env, FINISH, MALFORMED_ID)

    wait_until(lambda: sentry.received("ValidationError"), what="the error's envelope at Sentry")


def test_each_periodic_task_of_beat_reports_to_sentry_as_a_cron_monitor(
    sentry, project_env, database, start_worker, start_beat
):
    # A mailing every minute: Sentry's crons count whole minutes (the outbox's relay,
    # every 10 s, is left out).
    project_env.update(
        SENTRY_DSN=sentry.dsn(),
        NOTIFY_CUSTOMERS_CRONTAB="* * * * *",
        NOTIFY_CUSTOMERS_MESSAGE="Every minute",
    )
    start_worker()
    beat = start_beat()

    # Beat says a run starts; the worker that ran it says how it went.
    ran = {("scheduled_notification", "in_progress"), ("scheduled_notification", "ok")}
    wait_until(lambda: ran <= set(sentry.check_ins()), 90, "the mailing's check-ins")
    # Those run more often than a minute report nothing, nor warn at every run.
    monitors = {monitor for monitor, _ in sentry.check_ins()}
    assert monitors.isdisjoint({"relay_outbox", "notify_customers"})
    assert "not supported by Sentry Crons" not in beat.log()


@pytest.mark.parametrize(
    ("schedule", "monitored"),
    [(10.0, False), (60, True), (90, False), (3600.0, True), (timedelta(minutes=2), True),
     (crontab(minute="*/5"), True)],
)  # fmt: skip
def test_only_what_runs_in_whole_minutes_is_a_cron_monitor(schedule, monitored):
    assert in_whole_minutes(schedule) is monitored


def test_with_sentry_dsn_a_management_command_has_a_sentry_client_too(sentry, project_env):
    project_env["SENTRY_DSN"] = sentry.dsn()

    shell = manage(project_env, "shell", "--verbosity=0", "-c", SENTRY_CLIENT_ACTIVE)

    assert shell.stdout.strip() == "True"


def test_without_sentry_dsn_there_is_no_sentry_client_to_send_anything(project_env):
    project_env.pop("SENTRY_DSN", None)

    shell = manage(project_env, "shell", "--verbosity=0", "-c", SENTRY_CLIENT_ACTIVE)

    assert shell.stdout.strip() == "False"
