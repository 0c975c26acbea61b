"""Build fntrace's optional C hot path; fntrace installs and runs without it.

A failed compile (no compiler, no Python headers) is not an error: the
extension is marked optional and fntrace falls back to its pure-Python path
(``fntrace info`` and ``fntrace.core.accel.status()`` tell which one is in use).
The sources are in fntrace/csrc/, one file per concern (csrc/module.c has
the map); they are separate translation units whose shared names are hidden,
so the shared object exports PyInit__speedups alone.
"""

import os
from glob import glob

from setuptools import Extension, setup

CSRC = os.path.join("fntrace", "csrc")
SOURCES = sorted(glob(os.path.join(CSRC, "*.c")))
HEADERS = sorted(glob(os.path.join(CSRC, "*.h")))
FLAGS = ["-O2"] if os.name == "nt" else ["-O2", "-fvisibility=hidden"]

setup(
    ext_modules=[
        Extension("fntrace._speedups", SOURCES, depends=HEADERS, include_dirs=[CSRC],
                  optional=True, extra_compile_args=FLAGS),
    ],
)
