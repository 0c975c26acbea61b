"""The trace file format: its writer and reader (tracefile.py) and their input limits.

Below the tracing layer and independent of it: a recording writes through it, every
reader reads through it, and neither needs the other.
"""
