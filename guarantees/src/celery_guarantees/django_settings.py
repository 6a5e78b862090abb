"""Celery reads a plain copy of Django's CELERY_* settings.

Pointed at `django.conf:settings` (as Celery's Django example does), Celery looks every
setting up through Django's lazy settings object, trying two names in each of its maps
on each lookup, a missing one raising inside Django each time: about a fifth of a
`.delay()` (README, *What it costs*; docs/celery-reads-django-settings-lazily.md;
upstream, Celery unwrapping them: patches/celery-5.7.0-django-settings-unwrapped.patch).

The copy is taken from the same settings when Celery first loads its configuration, so
`config_from_object("django.conf:settings")` means what it says. Like any Celery
configuration, it is read once: a Django setting changed afterwards (a test's
override_settings) does not reach Celery; `app.conf.update()` still does."""

from celery import Celery
from django.conf import settings


def read_a_copy_of_django_settings(app: Celery, namespace: str) -> None:
    """Have `app` load a copy of Django's settings named `<namespace>_*` when it
    configures itself."""

    def copy_django_settings(sender: Celery, **kwargs: object) -> None:
        # Sent as the configuration starts to load, before Celery reads its source:
        # pointed at another source now, it loads that one, and nothing twice. Copied
        # under Celery's own names (CELERY_TASK_SERIALIZER as task_serializer): under
        # Django's, a few match Celery 3's, and the worker would warn that they are.
        prefix = f"{namespace}_"
        copy = {
            name.removeprefix(prefix).lower(): getattr(settings, name)
            for name in dir(settings)
            if name.startswith(prefix)
        }
        sender.config_from_object(copy, namespace=namespace)

    app.on_configure.connect(copy_django_settings, sender=app, weak=False)
