"""Imported by every Python child of ``fntrace record --follow`` (this folder is put
first on PYTHONPATH): starts the child's own recording, then hands over to the
``sitecustomize`` this one hides, if any, so the user's site setup still runs."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))


def _chain() -> None:
    """Run the ``sitecustomize`` site would have found without this folder (now off
    sys.path)."""
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", sys.path)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules["sitecustomize"] = module
    spec.loader.exec_module(module)


def _start() -> None:
    # fntrace may be importable only from the folder this package sits in (a checkout);
    # that folder is on sys.path just long enough to import it, so it shadows nothing.
    root = os.path.dirname(os.path.dirname(os.path.dirname(_HERE)))
    added = False
    try:
        from fntrace.recording import record
    except ImportError:
        sys.path.insert(0, root)
        added = True
    try:
        from fntrace.recording import record

        record.start_followed_child()
    except (Exception, SystemExit) as exc:  # the program runs, untraced, whatever failed
        print(f"fntrace record --follow: not tracing pid {os.getpid()}: {exc}",
              file=sys.stderr)
    finally:
        if added and root in sys.path:
            sys.path.remove(root)


if __name__ == "sitecustomize":
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
    _chain()
    if os.environ.get("FNTRACE_FOLLOW"):
        _start()
