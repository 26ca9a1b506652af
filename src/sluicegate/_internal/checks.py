"""Value checks and message helpers shared by every layer (numbers, reprs, did-you-mean)."""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from typing import Any


def is_number(value: object) -> bool:
    """An int or float, but not a bool (``True`` is an int to Python, never a setting)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_positive_finite(value: object) -> bool:
    """A number > 0 that is not inf or nan (seconds, sizes)."""
    return is_number(value) and math.isfinite(value) and value > 0  # type: ignore[arg-type, operator]


def describe(value: Any) -> str:
    """Short repr for error messages (never dumps payloads)."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """A ``" (did you mean 'x'?)"`` suffix for error messages, or ``""``."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
