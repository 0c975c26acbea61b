"""``fntrace record --follow`` across new interpreters.

Forked children keep the parent's recorder (``record`` restarts it into
``PATH.<pid>`` after a fork).  A child that is a new Python process
(``subprocess`` running ``sys.executable``, multiprocessing's spawn and
forkserver) knows nothing of it, so the parent leaves the recipe in the
environment: ``FNTRACE_FOLLOW`` holds the output path and the record options,
and ``fntrace/recording/_follow`` (first on PYTHONPATH) holds a ``sitecustomize`` that
calls :func:`start_child` before the child's program runs.  The environment is
inherited, so children of children are followed too.  Children started with
``-S``, ``-I`` or ``-E`` are not.
"""

from __future__ import annotations

import argparse
import json
import os

__all__ = ["ENV", "OPTIONS", "export", "start_child"]

ENV = "FNTRACE_FOLLOW"
FOLDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_follow")
# The record options a child is configured with (``--thread`` ids, ``--live`` and
# ``--inject`` belong to the parent's process only).
OPTIONS = ("tracer", "filter", "notrace", "graph_function", "graph_notrace", "max_depth",
           "thresh", "args", "retval", "buffer_size", "no_overwrite", "trigger", "clock")


def export(ns: argparse.Namespace) -> None:
    """Make every Python child of this process record with ``ns``'s options."""
    recipe = {"output": os.path.abspath(ns.output), "root_pid": os.getpid(),
              "options": {key: getattr(ns, key) for key in OPTIONS}}
    os.environ[ENV] = json.dumps(recipe)
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = FOLDER + (os.pathsep + old if old else "")


def start_child() -> None:
    """In a new child interpreter: record into ``PATH.<pid>`` as the root records."""
    import sys

    from fntrace.recording.record import start_recording

    recipe = json.loads(os.environ[ENV])
    ns = argparse.Namespace(**recipe["options"], thread=None, follow=True,
                            output=recipe["output"])
    rec = start_recording(ns, list(sys.argv), f"{ns.output}.{os.getpid()}",
                          root_pid=recipe["root_pid"])
    rec.inst.tracing_on = True
