"""One trace per notification, when OTEL_EXPORTER_OTLP_ENDPOINT names a collector.

OpenTelemetry's Django and Celery instrumentation: the page's request, the publish
from the outbox (Celery's apply_async, in the request as its transaction commits), and
each task the notification runs (notify_customers, every send_batch, then
finish_notification) are spans of the request's trace, carried from process to
process in the messages' headers; a message the outbox kept (the broker was away)
keeps the request's trace context, and the relay publishes it in that trace
(playground/outbox.py). The exporter reads the rest of its configuration
from the environment, as OpenTelemetry documents it (OTEL_SERVICE_NAME, OTEL_*_HEADERS
...). Unset: neither the instrumentation nor the exporter is imported (redis-py imports
OpenTelemetry's API itself whenever it is installed)."""

import os


def trace_if_asked(endpoint: str) -> None:
    """Send every process's spans to the collector at `endpoint`
    (OTEL_EXPORTER_OTLP_ENDPOINT, which the exporter reads itself), if there is one. In a
    prefork worker the spans of the pool processes go too: the SDK's batch processor
    starts again in each forked process."""
    if not endpoint:
        return
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # The project's name, unless OTEL_SERVICE_NAME gives another.
    named = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: "storefront"}
    provider = TracerProvider(resource=Resource.create(named))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    DjangoInstrumentor().instrument()
    CeleryInstrumentor().instrument()
