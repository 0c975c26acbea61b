"""The tracing layer: what the kernel's tracefs instance is, over the core.

The ring buffer and its events, the Instance (the tracefs file table that
features register their files into), the tracers (function, function_graph,
profile, stack), triggers, probes, error injection and live patching.  It
imports ``fntrace.core`` and nothing above it.
"""

# Error injection and live patching are not imported here: their tracefs files
# (fail_function/, livepatch/) are registered deferred (fntrace/tracing/tracefs.py)
# and their modules load on first use, so a recording's start-up does not pay them.
