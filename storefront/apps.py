from django.apps import AppConfig
from django.conf import settings

from storefront.logs import report_errors_to_sentry
from storefront.tracing import trace_if_asked


class StorefrontConfig(AppConfig):
    """What every Django process of the project (web, worker, Beat, a command) sets up
    once Django has, not when the settings are imported: settings are data."""

    name = "storefront"

    def ready(self) -> None:
        report_errors_to_sentry(settings.SENTRY_DSN, settings.CELERY_BEAT_SCHEDULE)
        trace_if_asked(settings.OTEL_EXPORTER_OTLP_ENDPOINT)
