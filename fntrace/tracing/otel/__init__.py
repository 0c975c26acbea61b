"""OpenTelemetry sinks: spans for selected functions, logpoints (docs/otel.md).

attributes.py parses and reads the ``KEY=EXPR`` attributes (the probes'
fetcharg grammar), spans.py makes a span of each call, logpoints.py sends probe
hits as span events or log records, registry.py keeps the live ones.  Only
registry.py may be imported without OpenTelemetry installed.
"""
