"""Natural sort order: runs of digits compare as numbers, so 'f2' sorts before 'f10'."""
from __future__ import annotations

import re

_DIGIT_RUNS = re.compile(r"(\d+)")


def natural_key(text: str) -> tuple:
    """Sort key of ``text`` comparing digit runs as numbers ('f2' < 'f10', 'block_9' <
    'block_10'): the text split into alternating non-digit strings and integers."""
    return tuple(int(part) if part.isdigit() else part for part in _DIGIT_RUNS.split(text))
