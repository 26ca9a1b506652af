"""The one clock every layer reads: trio's (so MockClock drives all timing logic)."""

from __future__ import annotations

import time

import trio


def now() -> float:
    """``trio.current_time()``; ``time.monotonic()`` when called outside ``trio.run``.

    The fallback lets synchronous users (scripts, notebooks) build views and leases; inside a
    run, virtual clocks such as ``trio.testing.MockClock`` are honoured.
    """
    try:
        return trio.current_time()
    except RuntimeError:
        return time.monotonic()
