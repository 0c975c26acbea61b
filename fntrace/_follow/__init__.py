"""Not imported: this folder goes on a followed child's PYTHONPATH (see fntrace/follow.py);
the file only makes packaging ship it."""
