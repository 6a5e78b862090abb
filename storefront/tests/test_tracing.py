"""One trace per notification (storefront/tracing.py): with OTEL_EXPORTER_OTLP_ENDPOINT
set, the web and the worker send their spans to a real OTLP receiver, started here,
and the page's request, the publish and every task of the notification share the
request's trace. Unset, nothing that traces is even imported."""

import threading
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from celery_guarantees.testing.servers import free_port
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from conftest import wait_until, wait_until_done
from harness.processes import manage

TASKS = "playground.tasks."
# redis-py imports OpenTelemetry's API whenever it is installed (its observability);
# what traces (the instrumentation, the exporter) is what must stay out.
TRACING_LOADED = (
    "import sys; print(any(name.startswith(('opentelemetry.instrumentation',"
    " 'opentelemetry.exporter')) for name in sys.modules))"
)


class Receiver(ThreadingHTTPServer):
    """Takes spans as an OpenTelemetry collector's OTLP/HTTP receiver does."""

    def __init__(self):
        self.spans = []  # (trace id, span id, parent span id, name)
        super().__init__(("127.0.0.1", free_port()), ExportHandler)

    def endpoint(self):
        return f"http://127.0.0.1:{self.server_port}"

    def traces(self):
        """The names of the spans received, by trace."""
        by_trace = defaultdict(list)
        for trace_id, _span, _parent, name in list(self.spans):
            by_trace[trace_id].append(name)
        return by_trace


class ExportHandler(BaseHTTPRequestHandler):
    def do_POST(self):
        request = ExportTraceServiceRequest.FromString(
            self.rfile.read(int(self.headers["Content-Length"]))
        )
        for resource in request.resource_spans:
            for scope in resource.scope_spans:
                self.server.spans += [
                    (span.trace_id.hex(), span.span_id.hex(), span.parent_span_id.hex(), span.name)
                    for span in scope.spans
                ]
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    server = Receiver()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("broker", ["up", "away at the page"])
def test_a_notification_is_one_trace_from_the_page_to_its_last_task(
    broker, receiver, project_env, seed_customers, smtp_server, start_web, start_worker,
    start_beat, database, request,
):  # fmt: skip
    project_env.update(
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint(),
        OTEL_BSP_SCHEDULE_DELAY="100",  # ms between exports, 5 s by default
        NOTIFY_BATCH_SIZE="2",
        OUTBOX_RELAY_EVERY="0.5",
    )
    seed_customers(5)  # three batches
    own_broker = request.getfixturevalue("own_broker") if broker != "up" else None
    web = start_web()
    start_worker()

    if own_broker:  # the page keeps the message in the outbox; Beat's relay publishes it
        own_broker.stop()
        assert requests.get(web.url("/playground/hello/"), timeout=5).status_code == 200
        own_broker.start()
        start_beat()
    else:
        assert requests.get(web.url("/playground/hello/"), timeout=5).status_code == 200
    wait_until_done(database)

    # Each process exports its own spans, in its own time: the trace is whole once the
    # last has.
    whole = Counter(
        {
            "GET playground/hello/": 1,  # the page's request
            f"apply_async/{TASKS}notify_customers": 1,  # the publish, from the outbox or relay
            f"run/{TASKS}notify_customers": 1,
            f"run/{TASKS}send_batch": 3,
            f"run/{TASKS}finish_notification": 1,
        }
    )

    def the_pages_trace():
        traces = receiver.traces().values()
        return next((names for names in traces if "GET playground/hello/" in names), [])

    wait_until(
        lambda: Counter(the_pages_trace()) >= whole,
        what=lambda: f"the page's trace whole (so far: {sorted(the_pages_trace())})",
    )


@pytest.mark.parametrize(("endpoint", "loaded"), [("", "False"), ("http://127.0.0.1:4318", "True")])
def test_without_an_endpoint_nothing_of_the_tracing_is_loaded(project_env, endpoint, loaded):
    project_env["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint

    shell = manage(project_env, "shell", "--verbosity=0", "-c", TRACING_LOADED)

    assert shell.stdout.strip() == loaded
