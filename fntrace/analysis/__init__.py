"""Reading trace files: replay, report, dump (Chrome, folded stacks) and info.

Works from the file alone (``fntrace.formats``), never from a live tracer.
"""
