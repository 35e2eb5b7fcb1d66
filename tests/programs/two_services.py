"""Two instrumented services calling each other, sent with the real OpenTelemetry Python SDK.

Usage: two_services.py OTLP_HTTP_ENDPOINT N
Per i in range(N), one trace: frontend SERVER "GET /checkout" (root) → frontend CLIENT
"GET /api/stock" → backend SERVER "GET /api/stock" (status ERROR when i % 3 == 0), and frontend
CLIENT "POST /pay" to payments-legacy (peer.service; uninstrumented: no server span).
Prints one JSON object: {"traces": [trace ids], "failed": n, "flushed": bool}.
"""
import json
import sys

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode


def provider(service, endpoint):
    p = TracerProvider(resource=Resource.create({"service.name": service}))
    p.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint + "/v1/traces")))
    return p


def main():
    endpoint, n = sys.argv[1], int(sys.argv[2])
    fp, bp = provider("frontend", endpoint), provider("backend", endpoint)
    front, back = fp.get_tracer("frontend"), bp.get_tracer("backend")
    traces, failed = [], 0
    for i in range(n):
        root = front.start_span("GET /checkout", kind=SpanKind.SERVER)
        rctx = trace.set_span_in_context(root)
        call = front.start_span("GET /api/stock", context=rctx, kind=SpanKind.CLIENT)
        server = back.start_span("GET /api/stock", context=trace.set_span_in_context(call),
                                 kind=SpanKind.SERVER)
        if i % 3 == 0:
            server.set_status(Status(StatusCode.ERROR, "out of stock"))
            failed += 1
        server.end()
        call.end()
        pay = front.start_span("POST /pay", context=rctx, kind=SpanKind.CLIENT,
                               attributes={"peer.service": "payments-legacy"})
        pay.end()
        root.end()
        traces.append(format(root.get_span_context().trace_id, "032x"))
    ok = fp.force_flush(10_000) and bp.force_flush(10_000)
    fp.shutdown()
    bp.shutdown()
    print(json.dumps({"traces": traces, "failed": failed, "flushed": ok}))


if __name__ == "__main__":
    main()
