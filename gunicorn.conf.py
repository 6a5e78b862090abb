"""gunicorn's settings for the web process (docker-compose's `web`). Any of them can be
overridden with GUNICORN_CMD_ARGS, e.g. "--bind 127.0.0.1:8000 --workers 5"."""

import os

from django.conf import settings

from storefront.logs import logging_config

bind = "0.0.0.0:8000"
# Sync workers: the page does no slow work itself (it is queued), so a few processes
# per core keep both cores busy. WEB_CONCURRENCY sets it for other machines.
workers = int(os.environ.get("WEB_CONCURRENCY", 4))
# A request taking longer than this is a bug: the slow work belongs to Celery.
timeout = 30
# On SIGTERM (deploy), requests in flight get this long to finish.
graceful_timeout = 20
# One line per request and per error, on stdout/stderr like every other process.
accesslog = "-"
errorlog = "-"
# gunicorn's own lines (its master's too) in LOG_FORMAT, like every other process.
logconfig_dict = logging_config(
    os.environ.get("LOG_FORMAT", "plain"), os.environ.get("LOG_LEVEL", "INFO")
)


def on_starting(server):
    """Read the settings in the master, before any worker starts: settings that are
    refused stop gunicorn here, with their one sentence and a non-zero exit. Refused in
    a worker, the worker would exit at boot and gunicorn start another, forever."""
    settings.SECRET_KEY  # noqa: B018 (reading one setting loads them all)
