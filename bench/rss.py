"""Peak memory of a benchmark child process (shared by the children)."""

from __future__ import annotations

import resource


def peak_rss_kib() -> int:
    """Peak resident set size of this process so far, KiB.

    Linux: VmHWM of /proc/self/status, the high-water mark of this program's own
    memory.  Not ru_maxrss: Linux carries ru_maxrss over exec, so a child's
    ru_maxrss is never below its parent's RSS at fork time (~19 MiB for the
    campaign's parent, which would hide everything under it).  ru_maxrss is the
    fallback where there is no /proc.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
