"""fntrace inside other tools: the IPython magics and what pytest's plugin shares.

The pytest plugin itself stays at ``fntrace.pytest_plugin``: that module path is
the ``pytest11`` entry point recorded in every installed copy's metadata.
"""
