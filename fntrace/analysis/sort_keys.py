"""The columns ``fntrace report`` sorts and diffs by, in a module of their own.

The command's parser needs them to list its choices, and importing the report
itself (its aggregation and segment pairing) for that made every ``fntrace``
command, ``record`` included, pay for a reader it does not run.
"""

SORT_KEYS = ("calls", "total", "self", "avg", "min", "max", "name")
TIME_KEYS = ("total", "self", "avg", "min", "max")
