"""Send traces to a Sonde store with the real OpenTelemetry Python SDK.

Usage: send_traces.py grpc|http ENDPOINT SERVICE [N] [TENANT]
Prints one JSON object: {"traces": [{"trace_id", "root_span_id", "child_span_id", "start", "end"}]}.
Each trace: a SERVER root "GET /items/{i}" with http attributes and a CLIENT child "SELECT"
with an error status on odd i; the child is ended and exported in a second batch, so spans of
one trace arrive in several requests.
"""
import json
import sys

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode


def exporter(kind, endpoint, tenant):
    headers = {"X-Scope-OrgID": tenant} if tenant else None
    if kind == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=endpoint, insecure=True,
                                headers=(("x-scope-orgid", tenant),) if tenant else None)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=endpoint + "/v1/traces", headers=headers)


def main():
    kind, endpoint, service = sys.argv[1], sys.argv[2], sys.argv[3]
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    tenant = sys.argv[5] if len(sys.argv) > 5 else None
    provider = TracerProvider(resource=Resource.create({"service.name": service, "deployment.environment": "test"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter(kind, endpoint, tenant)))
    tracer = provider.get_tracer("sonde-test", "1.2.3")
    out = []
    for i in range(n):
        root = tracer.start_span(f"GET /items/{i}", kind=SpanKind.SERVER, attributes={
            "http.request.method": "GET",
            "http.response.status_code": 500 if i % 2 else 200,
            "http.route": "/items/{id}",
            "ratio": 0.5,
            "cached": i % 2 == 0,
        })
        ctx = trace.set_span_in_context(root)
        child = tracer.start_span("SELECT", context=ctx, kind=SpanKind.CLIENT, attributes={"db.system": "postgresql"})
        child.add_event("query.start", {"rows": 3})
        if i % 2:
            child.set_status(Status(StatusCode.ERROR, "deadlock"))
        child.end()
        root.end()
        rc = root.get_span_context()
        out.append({
            "trace_id": format(rc.trace_id, "032x"),
            "root_span_id": format(rc.span_id, "016x"),
            "child_span_id": format(child.get_span_context().span_id, "016x"),
            "start": root.start_time,
            "end": root.end_time,
        })
    ok = provider.force_flush(10_000)
    provider.shutdown()
    print(json.dumps({"traces": out, "flushed": ok}))


if __name__ == "__main__":
    main()
