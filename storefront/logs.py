"""How every process logs (web, worker, beat, flower): one line per event, plain or
JSON, and errors to Sentry when a DSN is given. Read by the settings, so it
imports nothing of Django's settings at import time."""

import logging
import re
import sys
from datetime import timedelta
from typing import Any

import click
import sentry_sdk
from celery import Celery, current_task, signals
from celery.schedules import crontab
from pythonjsonlogger.json import JsonFormatter

PLAIN = "{asctime} {levelname} {name}: {message}"
# A task's lines read as Celery's own did: `playground.tasks.notify_customers[<id>]: Hello`.
PLAIN_TASK = "{asctime} {levelname} {name}: {task_name}[{task_id}]: {message}"


class TaskFilter(logging.Filter):
    """Names the task (task_name, task_id) on every line logged while one runs, whatever
    the logger: an operator can follow one task through the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        # Celery's proxy for the task this thread runs: false where none runs.
        if current_task and current_task.request.id:
            record.__dict__.update(task_name=current_task.name, task_id=current_task.request.id)
        return True


class ClientMistake(logging.Filter):
    """A request the client got wrong (a Host header not in ALLOWED_HOSTS) is no server
    bug: one warning line, without the traceback Django attaches, and so no error for
    Sentry either."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info, record.exc_text = None, None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


class PlainFormatter(logging.Formatter):
    """PLAIN, or PLAIN_TASK for the lines of a task."""

    def __init__(self) -> None:
        super().__init__(PLAIN, style="{")
        self._task_style = logging.StrFormatStyle(PLAIN_TASK)

    def formatMessage(self, record: logging.LogRecord) -> str:
        # Celery's own lines about a task ("Task ...[id] succeeded") name it already.
        if hasattr(record, "task_id") and f"[{record.task_id}]" not in record.message:
            return self._task_style.format(record)
        return super().formatMessage(record)


FORMATTERS: dict[str, dict[str, Any]] = {
    "plain": {"()": PlainFormatter},
    # One object per line: a traceback is its `exc_info` string, newlines escaped.
    "json": {
        "()": JsonFormatter,
        "fmt": "{levelname}{name}{message}",
        "style": "{",
        "rename_fields": {"levelname": "level", "name": "logger"},
        "timestamp": "time",
    },
}


def logging_config(log_format: str, level: str) -> dict[str, Any]:
    """Django's LOGGING for `log_format` ("plain" or "json") at `level`. Any other
    format stops the process at start, as a missing setting does."""
    if log_format not in FORMATTERS:
        sys.exit(
            f"storefront: the environment variable LOG_FORMAT is {log_format!r};"
            f" it must be {' or '.join(FORMATTERS)}."
        )
    # These loggers come with a handler of their own (Django's, runserver's, gunicorn's)
    # that would print their lines in another format.
    to_root = {"handlers": [], "propagate": True}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "task": {"()": TaskFilter},
            "client_mistake": {"()": ClientMistake},
        },
        "formatters": {log_format: FORMATTERS[log_format]},
        "handlers": {
            # On stderr, as Python's logging has it: what a command prints on stdout
            # (`celery call`'s task id, `manage.py dumpdata`) stays its own.
            "console": {
                "class": "logging.StreamHandler",
                "formatter": log_format,
                "filters": ["task"],
            },
        },
        "root": {"handlers": ["console"], "level": level.upper()},
        "loggers": {
            "django": to_root,
            "django.server": to_root,
            "gunicorn.error": to_root,
            "gunicorn.access": to_root,
            "django.security.DisallowedHost": {"filters": ["client_mistake"]},
        },
    }


def use_django_logging(**_signal: object) -> None:
    """Apply Django's LOGGING to this process now: Celery's processes would otherwise
    print their first lines (and warnings) before Django's setup applies it."""
    from django.conf import settings
    from django.utils.log import configure_logging

    configure_logging(settings.LOGGING_CONFIG, settings.LOGGING)
    # Python's warnings (Celery's about running as root) are log lines too.
    logging.captureWarnings(True)


def _quiet_when_json(ctx: click.Context, _param: click.Parameter, _value: object) -> None:
    from django.conf import settings

    if settings.LOG_FORMAT == "json":
        ctx.obj.quiet = True


def log_celery_through_django(app: Celery) -> None:
    """Every line of the worker (its pool processes too) and of Beat in Django's LOGGING.

    Celery configures no logging of its own when setup_logging has a receiver, and
    then leaves stdout alone too: redirected to its `celery.redirected` logger, Beat's
    tracebacks came out one character per line. In JSON the worker and Beat print no
    banner (many lines of plain text), as with `celery -q`; their log still says where
    they connect and when they are ready."""
    signals.setup_logging.connect(use_django_logging, weak=False)
    # The worker warns about running as root before it sets up logging.
    signals.celeryd_init.connect(use_django_logging, weak=False)
    # The banners are printed before Celery sends any signal: only the command's own
    # options are read earlier, so a hidden one decides.
    quiet = click.Option(
        ["--quiet-when-json"],
        is_flag=True,
        hidden=True,
        expose_value=False,
        callback=_quiet_when_json,
    )
    app.user_options["worker"].add(quiet)
    app.user_options["beat"].add(quiet)


def report_errors_to_sentry(dsn: str, beat_schedule: dict[str, dict[str, Any]]) -> None:
    """Send errors (web requests and tasks) to Sentry, if a DSN is given; nowhere otherwise.
    Each of Beat's periodic tasks reports too, as a cron monitor named after its entry
    in `beat_schedule`: Sentry says when a run is missed, fails or overruns. Sentry's
    crons count whole minutes: those run more often (the outbox's relay) are left out,
    rather than warned about at every run."""
    if dsn:
        from sentry_sdk.integrations.celery import CeleryIntegration
        from sentry_sdk.integrations.django import DjangoIntegration

        too_often = [
            f"{re.escape(name)}$"
            for name, entry in beat_schedule.items()
            if not in_whole_minutes(entry["schedule"])
        ]
        celery = CeleryIntegration(monitor_beat_tasks=True, exclude_beat_tasks=too_often)
        sentry_sdk.init(dsn=dsn, integrations=[DjangoIntegration(), celery])


def in_whole_minutes(schedule: Any) -> bool:
    """Whether a Beat schedule (seconds, a timedelta, a crontab) runs in whole minutes."""
    if isinstance(schedule, crontab):
        return True
    seconds = schedule.total_seconds() if isinstance(schedule, timedelta) else float(schedule)
    return seconds >= 60 and seconds % 60 == 0
