"""Build fntrace's optional C hot path; fntrace installs and runs without it.

A failed compile (no compiler, no Python headers) is not an error: the
extension is marked optional and fntrace falls back to its pure-Python path
(``fntrace info`` and ``fntrace.core.accel.status()`` tell which one is in use).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("fntrace._speedups", ["fntrace/_speedups.c"], optional=True,
                  extra_compile_args=["-O2"]),
    ],
)
