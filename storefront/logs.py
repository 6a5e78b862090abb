"""How every process logs (web, worker, beat, flower): one line per event on stdout,
plain or JSON, and errors to Sentry when a DSN is given. Read by the settings, so it
imports nothing of Django's settings."""

from typing import Any

import sentry_sdk


def logging_config(log_format: str, level: str) -> dict[str, Any]:
    """Django's LOGGING for `log_format` ("plain" or "json") at `level`."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "plain": {"format": "{asctime} {levelname} {name}: {message}", "style": "{"},
        },
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": "plain"},
        },
        "root": {"handlers": ["console"], "level": level},
        # Django's own console handler would print its lines a second time.
        "loggers": {"django": {"handlers": [], "propagate": True}},
    }


def report_errors_to_sentry(dsn: str) -> None:
    """Send errors (web requests and tasks) to Sentry, if a DSN is given; nowhere otherwise."""
    if dsn:
        sentry_sdk.init(dsn=dsn)
