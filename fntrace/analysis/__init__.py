"""Reading traces: replay, report, dump (Chrome, folded stacks) and info from trace
files, and a failure's function_graph text cut and marked (``failure_graph``).

Works from the file or the text alone (``fntrace.formats``), never from a live
tracer, and never imports the recording side; what the readers share is in
``reading.py``.  Typed calls: the command line's parsing is fntrace/cli/'s.
"""
