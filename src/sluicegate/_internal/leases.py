"""Release results shared by both admission layers."""

from __future__ import annotations

from typing import Any, Final, Literal

import msgspec

ReleaseReason = Literal["released", "duplicate", "stale_lease", "wrong_generation", "unknown_lease"]


RELEASE_REASONS: Final[tuple[ReleaseReason, ...]] = (
    "released",
    "duplicate",
    "stale_lease",
    "wrong_generation",
    "unknown_lease",
)


class ReleaseResult(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """What a ``release`` call did. Release never raises: problems are reported here.

    ``released`` is true exactly when capacity was returned; a duplicate, stale,
    wrong-generation or unknown lease never adds capacity.
    """

    released: bool
    reason: ReleaseReason
    lease_id: int
    diagnostics: dict[str, Any] | None = None
