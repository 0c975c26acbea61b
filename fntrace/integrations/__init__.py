"""fntrace inside other tools: the IPython magics.

What they share with the pytest plugin (a failure's function_graph, cut and
marked) is a reader of trace text: ``fntrace.analysis.failure_graph``.

The pytest plugin itself stays at ``fntrace.pytest_plugin``: that module path is
the ``pytest11`` entry point recorded in every installed copy's metadata.
"""
