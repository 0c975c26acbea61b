"""End to end: fntrace's spans through the real OTLP/HTTP exporter to a receiver.

The receiver is an http.server on 127.0.0.1 run by the test; it decodes each
request with opentelemetry-proto's ExportTraceServiceRequest, as a collector
does.  The spans must arrive with the trace id of the request span they ran
under, the right parents and the code attributes.  Nothing waits on a clock:
the in-process test flushes the provider; the ``fntrace run --otel`` test waits
for the program to exit (the SDK flushes at interpreter exit).
"""

from __future__ import annotations

import gzip
import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import needs_subprocess, needs_threads

pytest.importorskip("opentelemetry.sdk", reason="needs opentelemetry-sdk (the test extra)")
pytest.importorskip("opentelemetry.exporter.otlp.proto.http",
                    reason="needs opentelemetry-exporter-otlp-proto-http (the test extra)")
pytest.importorskip("opentelemetry.proto", reason="needs opentelemetry-proto (the test extra)")

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

import fntrace
import fntrace.otel

pytestmark = needs_threads
ROOT = str(Path(fntrace.__file__).resolve().parent.parent)


class Receiver:
    """An OTLP/HTTP traces endpoint that keeps what it decodes."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.paths: list[str] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                receiver.paths.append(self.path)
                receiver.requests.append(ExportTraceServiceRequest.FromString(body))
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def spans(self) -> list[tuple[dict[str, Any], Any]]:
        """(resource attributes, span) for every span received."""
        out = []
        for req in self.requests:
            for rs in req.resource_spans:
                res = {kv.key: _value(kv.value) for kv in rs.resource.attributes}
                for ss in rs.scope_spans:
                    out.extend((res, span) for span in ss.spans)
        return out

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


def attrs(span: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in span.attributes}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.close()


def handle(order: dict[str, int]) -> int:
    return sum(price(item, qty) for item, qty in order.items())


def price(item: str, qty: int) -> int:
    return len(item) * qty


@pytest.mark.usefixtures("hot_path")
def test_spans_reach_an_otlp_receiver(receiver: Receiver) -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(
        OTLPSpanExporter(endpoint=f"{receiver.endpoint}/v1/traces")))
    try:
        fntrace.otel.instrument([f"{__name__}:handle", f"{__name__}:price"],
                                ["qty", "$retval"], tracer_provider=provider)
        tracer = provider.get_tracer("web")
        with tracer.start_as_current_span("POST /order") as req:
            assert handle({"book": 2, "pen": 3}) == 17
        assert provider.force_flush()
    finally:
        fntrace.otel.remove_all()
        provider.shutdown()
    assert set(receiver.paths) == {"/v1/traces"}
    got = [span for _, span in receiver.spans()]
    assert [s.name for s in got] == [f"{__name__}.price", f"{__name__}.price",
                                     f"{__name__}.handle", "POST /order"]
    trace_id = req.get_span_context().trace_id.to_bytes(16, "big")
    assert {s.trace_id for s in got} == {trace_id}
    p1, p2, h, r = got
    assert r.parent_span_id == b""
    assert h.parent_span_id == r.span_id
    assert p1.parent_span_id == p2.parent_span_id == h.span_id
    assert attrs(p1) == {"code.function.name": f"{__name__}.price",
                         "code.file.path": price.__code__.co_filename,
                         "code.line.number": price.__code__.co_firstlineno,
                         "qty": 2, "retval": 8}
    assert attrs(p2)["retval"] == 9
    assert attrs(h) == {"code.function.name": f"{__name__}.handle",
                        "code.file.path": handle.__code__.co_filename,
                        "code.line.number": handle.__code__.co_firstlineno, "retval": 17}


PROGRAM = '''\
from opentelemetry import trace


def handle(order):
    return sum(price(item, qty) for item, qty in order.items())


def price(item, qty):
    return len(item) * qty


with trace.get_tracer("web").start_as_current_span("POST /order"):
    print(handle({"book": 2, "pen": 3}))
'''


@needs_subprocess
def test_fntrace_run_otel_exports_from_the_environment(receiver: Receiver,
                                                      tmp_path: Path) -> None:
    prog = tmp_path / "shop.py"
    prog.write_text(PROGRAM)
    env = dict(os.environ, PYTHONPATH=ROOT, OTEL_TRACES_EXPORTER="otlp",
               OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, OTEL_SERVICE_NAME="shoptest")
    done = subprocess.run([sys.executable, "-m", "fntrace", "run",
                           "--otel", "price qty=qty $retval", "--otel", "handle",
                           "--", str(prog)], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "17\n"  # the program's output only: no trace lines
    got = receiver.spans()
    assert [s.name for _, s in got] == ["__main__.price", "__main__.price", "__main__.handle",
                                        "POST /order"]
    assert {res["service.name"] for res, _ in got} == {"shoptest"}
    assert len({s.trace_id for _, s in got}) == 1
    price1 = got[0][1]
    assert attrs(price1)["code.file.path"] == str(prog)
    assert attrs(price1)["code.line.number"] == 8
    assert (attrs(price1)["qty"], attrs(price1)["retval"]) == (2, 8)
    assert got[2][1].parent_span_id == got[3][1].span_id


@needs_subprocess
@pytest.mark.parametrize("args, env, why", [
    (["--otel", "price x=$nope"], {}, "unknown variable"),
    (["--otel", "x=1"], {}, "no function pattern"),
    (["--otel", "price"], {"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER='zipkin'"),
    (["--otel", "price"], {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
     "http/protobuf only"),
])
def test_fntrace_run_otel_bad_input(tmp_path: Path, args: list[str], env: dict[str, str],
                                    why: str) -> None:
    prog = tmp_path / "p.py"
    prog.write_text("print('ran')\n")
    e = dict(os.environ, PYTHONPATH=ROOT, **env)
    done = subprocess.run([sys.executable, "-m", "fntrace", "run", *args, "--", str(prog)],
                          env=e, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert why in done.stderr and done.stderr.startswith("fntrace run: --otel: ")
