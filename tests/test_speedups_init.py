"""fntrace._speedups' multi-phase init and module state: a second module
object (an import after `del sys.modules[...]`) gets its own state, and the
types, which serve the first module's state for the process's life, go on
working whichever module object made them.
"""

from __future__ import annotations

import gc
import sys

import pytest

import fntrace.core.accel

built = fntrace.core.accel.built
pytestmark = pytest.mark.skipif(built is None, reason="the C extension is not built")


class Buffer(built.RingCore if built is not None else object):  # type: ignore[misc]
    """A thread buffer as the ring buffer's ThreadBuffer describes its thread."""

    tid = 7
    name = "worker"
    cpu = 0
    thread_flags = ""


def test_a_second_module_object_works_beside_the_first() -> None:
    assert built is not None
    name = built.__name__
    try:
        del sys.modules[name]
        import fntrace._speedups as again  # a new module object, executed again
        assert again is not built
        assert again.RingCore is built.RingCore  # static types: shared
        del again
        gc.collect()
        # encode_buffers reads the buffers' attributes by the names the module
        # state holds: the first module's, alive though the second one is gone.
        ring = Buffer(4 * 64)
        for ts in range(6):  # the ring overwrites the two oldest
            assert ring.write((ts, 64, "marker", "text")) is True
        assert [ev[0] for ev in ring.events] == [2, 3, 4, 5]
        payload, n, tids, first, last, notes = built.encode_buffers(
            [ring], lambda buf, ev: (3, ev[3]), {})
        assert (n, tids, first, last, notes) == (4, [7], 2, 5, True)  # notes: not asked
        assert isinstance(payload, bytes) and b"worker" in payload
        assert built.local_clock() <= built.local_clock()
    finally:
        sys.modules[name] = built
