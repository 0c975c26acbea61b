"""How far behind the program a trace file may be: the recorder's promise, the readers' bound.

The recorder (fntrace/recording/recorder.py) writes the buffers to the file at
least every FLUSH_INTERVAL seconds; ``fntrace info`` says, of a file without
its footer, that a killed process lost at most that much.  Both sides read the
figure here, so neither imports the other.
"""

from __future__ import annotations

__all__ = ["FLUSH_INTERVAL"]

#: Seconds between two writes of the buffers to the file: what a SIGKILL (which
#: nothing can catch) loses at most, besides the chunk being written.
FLUSH_INTERVAL = 0.1
