"""Recording a program to a trace file: the ``fntrace record``/``run`` session.

Runs the program under an Instance, streams the ring buffer into the trace
file (``recorder``), follows forks and subprocesses (``follow``), and keeps
the program's behaviour (signals, forks, exit status) what it is untraced.
What to record is a ``RecordConfig`` (config.py), which the command line
(fntrace/cli/record.py) builds.  Imports the tracing layer and the file
format, never the readers, live control or the CLI.
"""
