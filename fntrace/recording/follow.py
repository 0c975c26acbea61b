"""``fntrace record --follow`` across new interpreters: the recipe in the environment.

Forked children keep the parent's recorder (``record`` restarts it into
``PATH.<pid>`` after a fork).  A child that is a new Python process
(``subprocess`` running ``sys.executable``, multiprocessing's spawn and
forkserver) knows nothing of it, so the parent leaves the recipe in the
environment: ``FNTRACE_FOLLOW`` holds the root's pid and the child's
RecordConfig (config.py: the inherited options, the output path) as JSON,
and ``fntrace/recording/_follow`` (first on PYTHONPATH) holds a
``sitecustomize`` that calls ``record.start_followed_child`` before the
child's program runs.  The environment is inherited, so children of children
are followed too.  Children started with ``-S``, ``-I`` or ``-E`` are not.

This module only writes and reads the recipe; it imports nothing of the
recording itself, which imports it.
"""

from __future__ import annotations

import os

from fntrace.recording.config import RecordConfig

__all__ = ["ENV", "FOLDER", "export", "recipe"]

ENV = "FNTRACE_FOLLOW"
FOLDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_follow")


def export(config: RecordConfig) -> None:
    """Make every Python child of this process record as ``config`` says."""
    import json  # only --follow needs it

    child = config.for_child(os.path.abspath(config.output or ""))
    os.environ[ENV] = json.dumps({"root_pid": os.getpid(), "config": child.to_json()})
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = FOLDER + (os.pathsep + old if old else "")


def recipe() -> tuple[RecordConfig, int]:
    """In a new child interpreter: its configuration and the root's pid."""
    import json

    data = json.loads(os.environ[ENV])
    return RecordConfig.from_json(data["config"]), int(data["root_pid"])
