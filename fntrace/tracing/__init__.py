"""The tracing layer: what the kernel's tracefs instance is, over the core.

The ring buffer and its events, the Instance (the tracefs file table that
features register their files into), the tracers (function, function_graph,
profile, stack), triggers, probes, error injection and live patching.  It
imports ``fntrace.core`` and nothing above it.
"""

# Error injection and live patching register their tracefs files (instance.SUBTREES)
# and event renderers into the Instance when they are imported.  They used to be
# loaded by ``import fntrace`` itself; now that the package loads only the core, the
# tracing layer loads them, so that every Instance has their files as before.
# (Explicit registration of features into the Instance replaces this: issue 13.)
from fntrace.tracing import inject, livepatch  # noqa: F401
