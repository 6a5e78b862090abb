"""Development's settings as they were before the mail queue: every task, the emails'
batches too, on the course's one queue (the baseline of bench/mail_queue.py)."""

from storefront.settings.dev import *  # noqa: F403

CELERY_TASK_ROUTES: dict[str, object] = {}
