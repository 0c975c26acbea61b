"""The tracing layer: what the kernel's tracefs instance is, over the core.

The ring buffer and its events, the Instance (the tracefs file table that
features register their files into), the tracers (function, function_graph,
profile, stack), triggers, probes, error injection and live patching.  It
imports ``fntrace.core`` and nothing above it.
"""
