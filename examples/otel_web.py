"""A small web service with OpenTelemetry request spans (docs/otel.md, README).

Each request gets a SERVER span, as a framework's instrumentation would make
one.  The functions it calls (``checkout`` -> ``load_user``, ``price_cart`` ->
``tax``) have no instrumentation in their code: fntrace adds their spans, under
the request's, at start (``fntrace run --otel``) or live (``fntrace ctl PID
otel/spans``).

Spans are exported by OTLP/HTTP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set
(Jaeger, Tempo, an OpenTelemetry Collector), else printed one a line on stderr.

    python3 examples/otel_web.py [--port 8765] [--requests N]
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import sys
import urllib.parse
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import StatusCode

USERS = {7: {"name": "ada", "cart": [("book", 12.5, 2), ("pen", 1.5, 4)]}}


class LineExporter(SpanExporter):
    """One line per finished span: enough to see the tree in a terminal."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        for s in spans:
            parent = f"{s.parent.span_id:016x}" if s.parent else "-" * 16
            attrs = {k: v for k, v in (s.attributes or {}).items()
                     if not k.startswith("code.")}
            events = "".join(
                f" event {e.name} "
                + json.dumps({k: v for k, v in (e.attributes or {}).items()
                              if not k.startswith("code.")
                              and k not in ("exception.stacktrace", "exception.escaped")})
                for e in s.events)
            status = f" {s.status.status_code.name}: {s.status.description}" if (
                s.status.status_code == StatusCode.ERROR) else ""
            print(f"span {s.context.trace_id:032x} {s.context.span_id:016x} <- {parent} "
                  f"{s.name} {json.dumps(attrs)}{status}{events}", file=sys.stderr, flush=True)
        return SpanExportResult.SUCCESS


def setup() -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "otel-web"}))
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    else:
        provider.add_span_processor(SimpleSpanProcessor(LineExporter()))
    trace.set_tracer_provider(provider)


def load_user(user_id: int) -> dict[str, object]:
    if user_id not in USERS:
        raise KeyError(f"no user {user_id}")
    return USERS[user_id]


def tax(amount: float) -> float:
    return round(amount * 0.2, 2)


def price_cart(cart: list[tuple[str, float, int]]) -> float:
    net = sum(price * qty for _, price, qty in cart)
    return net + tax(net)


def checkout(user_id: int) -> dict[str, object]:
    user = load_user(user_id)
    return {"user": user["name"], "total": price_cart(user["cart"])}  # type: ignore[arg-type]


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        url = urllib.parse.urlparse(self.path)
        tracer = trace.get_tracer("otel-web")
        with tracer.start_as_current_span(f"GET {url.path}", kind=trace.SpanKind.SERVER) as span:
            try:
                user_id = int(urllib.parse.parse_qs(url.query).get("user", ["0"])[0])
                body, status = json.dumps(checkout(user_id)), 200
            except KeyError as exc:
                body, status = json.dumps({"error": str(exc)}), 404
            span.set_attribute("http.response.status_code", status)
        data = (body + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--requests", type=int, default=0, help="stop after N requests")
    ns = ap.parse_args()
    setup()
    server = http.server.HTTPServer(("127.0.0.1", ns.port), Handler)
    print(f"serving on http://127.0.0.1:{ns.port}", file=sys.stderr, flush=True)
    if ns.requests:
        for _ in range(ns.requests):
            server.handle_request()
    else:
        server.serve_forever()


if __name__ == "__main__":
    main()
