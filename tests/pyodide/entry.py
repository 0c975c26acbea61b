"""Pyodide side of the 3.14 leg: install pytest from local wheels, then run the suite.

Run by run.mjs inside Pyodide with the repository at /repo and the wheels at the
directory given as the first argument.  Pure wheels are zip files that need no
install step beyond unpacking into site-packages (micropip would fetch its own
wheel from a CDN this machine cannot reach).
"""

from __future__ import annotations

import os
import sys
import sysconfig
import zipfile
from pathlib import Path


def install_wheels(wheel_dir: Path) -> list[str]:
    site = Path(sysconfig.get_paths()["purelib"])
    names = []
    for wheel in sorted(wheel_dir.glob("*.whl")):
        if not wheel.name.endswith("-none-any.whl"):
            raise SystemExit(f"pyodide: {wheel.name} is not a pure-Python wheel")
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(site)
        names.append(wheel.name)
    return names


def main() -> int:
    wheel_dir = Path(sys.argv[1])
    names = install_wheels(wheel_dir)
    if not names:
        raise SystemExit(f"pyodide: no wheels in {wheel_dir}")
    # The repository is the host's directory: leave no bytecode or pytest cache in it.
    sys.dont_write_bytecode = True
    os.environ.setdefault("COLUMNS", "200")
    os.chdir("/repo")
    sys.path.insert(0, "/repo")
    print(f"pyodide: Python {sys.version.split()[0]} on {sys.platform}; "
          f"installed {', '.join(names)}")
    import pytest

    return int(pytest.main(["-p", "no:cacheprovider", *sys.argv[2:]]))


if __name__ == "__main__":
    raise SystemExit(main())
