"""``fntrace run/record --otel``: instrumentations at start, an exporter from the environment.

A program that sets up OpenTelemetry itself keeps its own TracerProvider: the
spans go wherever it sends its own (the API's proxy tracer follows a provider
set later).  For a program that does not, ``OTEL_TRACES_EXPORTER=otlp`` (or
``console``) makes fntrace set the global provider before the program starts,
as ``opentelemetry-instrument`` would: the SDK's BatchSpanProcessor feeding the
OTLP/HTTP exporter, which reads the standard ``OTEL_EXPORTER_OTLP_*`` variables
itself, with the resource of ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES``.
The SDK flushes at interpreter exit.
"""

from __future__ import annotations

import os

from fntrace.tracing.otel import registry

__all__ = ["EXPORTERS", "provider_from_env", "start"]

EXPORTERS = ("otlp", "console", "none")


def provider_from_env() -> bool:
    """Set the global TracerProvider from ``OTEL_TRACES_EXPORTER``; whether one was set."""
    name = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if name in ("", "none"):
        return False
    if name not in EXPORTERS:
        raise ValueError(f"OTEL_TRACES_EXPORTER={name!r}: fntrace --otel sets up "
                         f"{', '.join(EXPORTERS)} (or leave it unset and configure "
                         "OpenTelemetry in the program)")
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                              os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"))
    if name == "otlp" and protocol.strip() != "http/protobuf":
        raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: fntrace --otel sets up "
                         "http/protobuf only")
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        raise ModuleNotFoundError(
            f"OTEL_TRACES_EXPORTER={name}: needs opentelemetry-sdk"
            + (" and opentelemetry-exporter-otlp-proto-http" if name == "otlp" else "")
        ) from None
    if name == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            raise ModuleNotFoundError("OTEL_TRACES_EXPORTER=otlp: needs "
                                      "opentelemetry-exporter-otlp-proto-http") from None
        exporter: object = OTLPSpanExporter()
    else:
        exporter = ConsoleSpanExporter()
    provider = TracerProvider(resource=Resource.create())
    provider.add_span_processor(BatchSpanProcessor(exporter))  # type: ignore[arg-type]
    trace.set_tracer_provider(provider)
    return True


def start(lines: list[str]) -> list[registry.Handle]:
    """Each ``--otel`` line's instrumentation (all parsed first: a typo starts none)."""
    if not registry.available():
        raise ModuleNotFoundError(registry.MISSING)
    for line in lines:
        registry.check_line("spans", line)
    provider_from_env()
    return [registry.add_line("spans", line) for line in lines]
