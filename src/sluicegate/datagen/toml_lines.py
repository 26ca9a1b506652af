"""Line numbers for dotted paths of a TOML document, so errors can say ``qa.toml:14``.

``tomllib`` returns plain dicts without positions. :class:`TomlLines` reads the text once and
remembers the line of every table header (``[run]``, ``[endpoints.writer]``, each
``[[columns]]``) and of every ``key =`` line under it. It understands the common shapes (bare
and quoted keys, dotted keys, arrays of tables); for anything else (a key inside an inline
table, a multi-line array) it answers the line of the nearest enclosing entry it knows, which
is still the right place to look.
"""

from __future__ import annotations

import re
from typing import Final, TypeAlias

PathPart: TypeAlias = str | int
Path: TypeAlias = tuple[PathPart, ...]

_ARRAY_HEADER: Final = re.compile(r"^\s*\[\[\s*(?P<name>[^\]]+?)\s*\]\]")
_TABLE_HEADER: Final = re.compile(r"^\s*\[\s*(?P<name>[^\]]+?)\s*\]")
_KEY: Final = re.compile(
    r"""^\s*(?P<key>(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*="""
)
_PART: Final = re.compile(r"""[A-Za-z0-9_-]+|"[^"]*"|'[^']*'""")


def _split(dotted: str) -> tuple[str, ...]:
    return tuple(part.strip("\"'") for part in _PART.findall(dotted))


class TomlLines:
    """Where each table and key of a TOML text was written (1-based line numbers)."""

    def __init__(self, text: str) -> None:
        self._lines: dict[Path, int] = {}
        arrays: dict[tuple[str, ...], int] = {}
        table: Path = ()
        in_multiline = False
        for number, line in enumerate(text.splitlines(), start=1):
            if in_multiline:
                if line.count('"""') % 2 == 1 or line.count("'''") % 2 == 1:
                    in_multiline = False
                continue
            stripped = line.lstrip()
            if not stripped or stripped.startswith("#"):
                continue
            if match := _ARRAY_HEADER.match(line):
                name = _split(match.group("name"))
                index = arrays.get(name, -1) + 1
                arrays[name] = index
                table = (*name, index)
                self._lines.setdefault(table, number)
                continue
            if match := _TABLE_HEADER.match(line):
                table = _split(match.group("name"))
                self._lines.setdefault(table, number)
                continue
            if match := _KEY.match(line):
                self._lines.setdefault((*table, *_split(match.group("key"))), number)
                rest = line[match.end() :]
                if rest.count('"""') % 2 == 1 or rest.count("'''") % 2 == 1:
                    in_multiline = True

    def line(self, path: Path) -> int | None:
        """The line of ``path``, or of its nearest known parent; ``None`` if none is known."""
        for end in range(len(path), 0, -1):
            found = self._lines.get(path[:end])
            if found is not None:
                return found
        return None
