"""Not imported: this folder goes on a followed child's PYTHONPATH (see
../follow.py); the file only makes packaging ship it."""
