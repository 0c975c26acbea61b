"""The help formatter of every fntrace parser: argparse's raw-description one,
measuring the terminal without importing shutil.

argparse makes a formatter for every ``add_argument`` (to check the metavar)
and each one asks ``shutil.get_terminal_size`` for the width.  Importing shutil
brings bz2, lzma and fnmatch with it: about 9M instructions of ``fntrace
record``'s start-up on 3.12, for a width only ``--help`` and errors print with.
The width is measured here as shutil measures it (``COLUMNS``, else the
terminal of ``sys.__stdout__``, else 80), each time, so nothing changes.
"""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["Formatter", "terminal_columns"]

#: shutil.get_terminal_size's fallback width.
FALLBACK_COLUMNS = 80


def terminal_columns() -> int:
    """``shutil.get_terminal_size().columns``, without shutil."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns > 0:
        return columns
    try:
        size = os.get_terminal_size(sys.__stdout__.fileno())  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        return FALLBACK_COLUMNS
    return size.columns or FALLBACK_COLUMNS


class Formatter(argparse.RawDescriptionHelpFormatter):
    """argparse.RawDescriptionHelpFormatter, its default width measured without shutil."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position,
                         terminal_columns() - 2 if width is None else width)
