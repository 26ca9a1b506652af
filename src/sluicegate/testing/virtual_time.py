"""Virtual-time runs that repeat exactly: the same seed gives the same event sequence.

Two things make a trio program's timing vary between runs:

- time itself, which :class:`trio.testing.MockClock` replaces with a virtual clock (with
  ``autojump_threshold=0`` it jumps to the next deadline whenever every task is blocked, so a
  run of virtual hours takes milliseconds);
- trio's scheduler, which deliberately randomizes the order of each batch of runnable tasks
  (``trio._core._run``: the batch is reversed at random, from a module-level
  ``random.Random``). Under Hypothesis trio switches to a deterministic mode instead: the batch
  is sorted by task creation order and shuffled by that generator, which Hypothesis seeds.
  :func:`deterministic_scheduling` turns that mode on and seeds the generator itself.

Together, a program whose own randomness is seeded (a pipeline's seed, a simulated provider's
seed) runs the same steps in the same order every time. Work done in real threads is outside
trio's control; sluicegate's pipeline runner therefore runs sync generators and file writes
inline when it sees a ``MockClock``. Two more sources of variation are yours to fix when they
matter: iteration over sets of strings (``PYTHONHASHSEED``) and wall-clock reads.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final, TypeVar

import trio

if TYPE_CHECKING:
    import trio.testing

__all__ = ["deterministic_scheduling", "run_virtual", "virtual_clock"]


T = TypeVar("T")


# trio's private names for its scheduling randomness (trio 0.25 - 0.35); checked at use.
_RUN_MODULE: Final = "trio._core._run"


_FLAG: Final = "_ALLOW_DETERMINISTIC_SCHEDULING"


_RANDOM: Final = "_r"


def virtual_clock(autojump_threshold: float = 0.0) -> trio.testing.MockClock:
    """A :class:`trio.testing.MockClock` that jumps ahead whenever every task is blocked."""
    import trio.testing  # imports pytest: only when a virtual clock is asked for

    return trio.testing.MockClock(autojump_threshold=autojump_threshold)


@contextmanager
def deterministic_scheduling(seed: int = 0) -> Iterator[None]:
    """Within the block, trio runs ready tasks in an order that depends only on ``seed``.

    Restores trio's previous mode and random state on exit. Raises ``RuntimeError`` naming
    the installed trio version if its scheduler no longer has the hooks this relies on.
    """
    module = importlib.import_module(_RUN_MODULE)
    generator = getattr(module, _RANDOM, None)
    if not hasattr(module, _FLAG) or generator is None or not hasattr(generator, "getstate"):
        raise RuntimeError(
            f"trio {trio.__version__} has no deterministic scheduling hook "
            f"({_RUN_MODULE}.{_FLAG}); pin trio to a version between 0.25 and 0.35"
        )
    flag = getattr(module, _FLAG)
    state = generator.getstate()
    setattr(module, _FLAG, True)
    generator.seed(seed)
    try:
        yield
    finally:
        setattr(module, _FLAG, flag)
        generator.setstate(state)


def run_virtual(
    async_fn: Callable[..., Awaitable[T]],
    *args: Any,
    scheduling_seed: int = 0,
    clock: trio.testing.MockClock | None = None,
    **kwargs: Any,
) -> T:
    """``trio.run(async_fn, *args, **kwargs)`` on a virtual clock with deterministic scheduling.

    ``clock`` defaults to :func:`virtual_clock`; pass your own to read ``clock.current_time()``
    afterwards. The same ``scheduling_seed`` gives the same scheduling order (other keyword
    arguments, such as a pipeline's ``seed``, go to ``async_fn``).
    """
    call = functools.partial(async_fn, *args, **kwargs) if kwargs else async_fn
    with deterministic_scheduling(scheduling_seed):
        return trio.run(call, *(() if kwargs else args), clock=clock or virtual_clock())
