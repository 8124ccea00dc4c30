"""Plain-text tables, as the commands and the benchmarks print them."""
from __future__ import annotations

from collections.abc import Sequence


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]], right_aligned: Sequence[bool]) -> str:
    """Text table with columns as wide as their widest cell; ``right_aligned`` per column. Characters
    that would break a line (newlines, tabs, other control characters) are shown escaped."""
    cells = [[printable(cell) for cell in row] for row in (header, *rows)]
    widths = [max(len(row[c]) for row in cells) for c in range(len(header))]
    lines = [
        "  ".join(cell.rjust(width) if right else cell.ljust(width)
                  for cell, width, right in zip(row, widths, right_aligned))
        for row in cells
    ]
    return "\n".join(line.rstrip() for line in lines)


def printable(text: str) -> str:
    """``text`` with each non-printable character as its Python escape (``"a\\nb"`` -> ``a\\\\nb``)."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
