"""Scheduling metadata of a column: what kind of work its cells are and whose group they join.

The scheduler's fairness group of a cell is derived from it: ``kind`` plus the deterministic
``identity`` tuple name the group, ``weight`` is the group's weight. Model columns default to
the identity of the endpoint they call, so every column calling one endpoint shares one group.
"""

from __future__ import annotations

import hashlib
import math
from typing import Final, Literal, TypeAlias

import msgspec

from .._internal.checks import did_you_mean, is_number
from .errors import SchedulingMetadataError

CellKind: TypeAlias = Literal["local", "model", "custom_model"]


"""``local``: no model call (samplers, expressions, plain functions); ``model``: a built-in
model column (one endpoint); ``custom_model``: a user generator making model calls."""


CELL_KINDS: Final[tuple[CellKind, ...]] = ("local", "model", "custom_model")


IdentityPart: TypeAlias = str | int


class SchedulingMetadata(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How the scheduler sees a column's cells.

    - ``kind``: ``local``, ``model`` or ``custom_model``.
    - ``identity``: a deterministic tuple of strings and integers naming the group (e.g. the
      endpoint ``("openai", "gpt-4o-mini")``); empty means "derive it" (the column name for
      local work, the endpoint for model work).
    - ``weight``: the group's positive fairness weight.

    Invalid values raise :class:`SchedulingMetadataError` naming the field.
    """

    kind: CellKind = "local"
    identity: tuple[IdentityPart, ...] = ()
    weight: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in CELL_KINDS:
            raise SchedulingMetadataError(
                "SchedulingMetadata.kind",
                f"unknown kind {self.kind!r}{did_you_mean(str(self.kind), CELL_KINDS)}",
                "use one of: " + ", ".join(CELL_KINDS),
            )
        if not isinstance(self.identity, tuple):
            raise SchedulingMetadataError(
                "SchedulingMetadata.identity",
                f"must be a tuple, got {type(self.identity).__name__}",
                "pass a tuple of strings and integers, e.g. ('openai', 'gpt-4o-mini')",
            )
        for index, part in enumerate(self.identity):
            # Only values whose text is the same in every process: no floats (repr drift),
            # no objects (their repr holds a memory address), no bools posing as ints.
            if not (
                isinstance(part, str) or (isinstance(part, int) and not isinstance(part, bool))
            ):
                raise SchedulingMetadataError(
                    f"SchedulingMetadata.identity[{index}]",
                    f"{part!r} ({type(part).__name__}) is not deterministic across runs",
                    "use strings and integers only",
                )
        w = self.weight
        if not (is_number(w) and math.isfinite(w) and w > 0):
            raise SchedulingMetadataError(
                "SchedulingMetadata.weight",
                f"must be a finite number > 0, got {w!r}",
                "use a positive weight such as 1.0 (3.0 gets three times the share)",
            )

    def group_key(self, default_identity: tuple[IdentityPart, ...]) -> str:
        """The fairness group key: ``kind:part/part``."""
        identity = self.identity or default_identity
        return f"{self.kind}:" + "/".join(str(p) for p in identity)

    def identity_hash(self, default_identity: tuple[IdentityPart, ...]) -> str:
        """A short stable hash of the identity (for correlation; bounded cardinality)."""
        identity = self.identity or default_identity
        text = msgspec.json.encode([self.kind, list(identity)])
        return hashlib.blake2b(text, digest_size=6).hexdigest()
