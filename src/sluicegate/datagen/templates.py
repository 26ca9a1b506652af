"""Prompt templates: ``{column}`` placeholders filled from a row's upstream values.

Placeholders follow :meth:`str.format`: ``{topic}``, ``{answer.score}`` (attribute of a
structured value), ``{scores[helpfulness]}`` (key of a mapping), ``{value!r}`` and format specs.
Literal braces are doubled (``{{`` and ``}}``), as in any format string. The root name of every
placeholder is a dependency of the column; the pipeline checks them against the declared columns
when it is built.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from typing import Any, Final

from .errors import PipelineDefinitionError

_ROOT: Final = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)")


_FORMATTER: Final = string.Formatter()


class PromptTemplate:
    """A parsed prompt template. ``placeholders`` are the column names it reads, in order."""

    __slots__ = ("placeholders", "text")

    def __init__(self, text: str, *, field: str = "prompt") -> None:
        if not isinstance(text, str):
            raise PipelineDefinitionError(
                field, f"must be a string, got {type(text).__name__}", "pass the prompt as text"
            )
        self.text = text
        self.placeholders = _parse(text, field)

    def render(self, values: Mapping[str, Any]) -> str:
        """The template with every placeholder filled from ``values``."""
        return self.text.format_map(values)

    def __repr__(self) -> str:
        return f"PromptTemplate({self.text!r})"


def _parse(text: str, field: str) -> tuple[str, ...]:
    names: dict[str, None] = {}
    try:
        parsed = list(_FORMATTER.parse(text))
    except ValueError as exc:
        raise PipelineDefinitionError(
            field,
            f"is not a valid template ({exc})",
            "write placeholders as {column_name} and double literal braces: {{ and }}",
        ) from None
    for _, name, spec, _ in parsed:
        if name is None:
            continue
        match = _ROOT.match(name)
        if match is None:
            raise PipelineDefinitionError(
                field,
                f"placeholder {{{name}}} does not name a column",
                "name an upstream column, e.g. {topic}; double literal braces: {{ and }}",
            )
        names[match.group(1)] = None
        if spec:
            # A nested placeholder in a format spec ({x:{width}}) is a dependency too.
            names.update(dict.fromkeys(_parse(spec, field)))
    return tuple(names)
