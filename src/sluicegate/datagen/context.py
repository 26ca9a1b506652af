"""What a generator sees: the row's upstream values (:class:`RowView`) and a :class:`CellContext`.

Both are built once per cell attempt and cost a few hundred nanoseconds; the random generator
of a context is only seeded when a generator reads ``ctx.rng``.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator, Mapping
from typing import Any, Final, Protocol

import trio

from .._internal.checks import did_you_mean
from ..events import RuntimeCorrelation, current_correlation
from ..requests import ModelRequest, ModelResponse

MISSING: Final[Any] = type("Missing", (), {"__repr__": lambda self: "<missing>"})()


"""Placeholder of a cell that has no value yet (never visible to generators)."""


def cell_seed(seed: int, row: int, column: str) -> int:
    """The 64-bit seed of one cell: a function of the run seed, the row index and the column."""
    digest = hashlib.blake2b(f"{seed}:{row}:{column}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


class RowView(Mapping[str, Any]):
    """A read-only view of one row: the values of the columns a generator may read.

    Reading a column that is not among the generator's dependencies raises ``KeyError``
    naming the fix, so a missing ``depends_on`` is found on the first row, not as a race.
    """

    __slots__ = ("_column", "_positions", "_values")

    def __init__(self, values: list[Any], positions: Mapping[str, int], column: str) -> None:
        self._values = values
        self._positions = positions
        self._column = column

    def __getitem__(self, name: str) -> Any:
        position = self._positions.get(name)
        if position is None:
            raise KeyError(
                f"column {self._column!r} read {name!r}, which is not among its dependencies "
                f"({', '.join(self._positions) or 'none'}){did_you_mean(name, self._positions)}. "
                f"Fix: add {name!r} to its depends_on (or name it as a parameter)"
            )
        return self._values[position]

    def __iter__(self) -> Iterator[str]:
        return iter(self._positions)

    def __len__(self) -> int:
        return len(self._positions)

    def __contains__(self, name: object) -> bool:
        return name in self._positions

    def __repr__(self) -> str:
        return f"RowView({dict(self)!r})"


class ModelCaller(Protocol):
    """What a context needs from the run to send model calls (the runner implements it)."""

    async def call(
        self, model: str, request: ModelRequest, holder: object | None = None
    ) -> ModelResponse: ...


class CellContext:
    """Per-cell facilities handed to a generator.

    - ``row_index``, ``row_group``, ``column``, ``attempt`` (1 for the first try) and
      ``correlation`` (the :class:`~sluicegate.events.RuntimeCorrelation` every event of this
      cell carries).
    - ``rng``: a :class:`random.Random` seeded from the run seed, the row index and the
      column, so a generator that draws from it is reproducible whatever the timing.
    - :meth:`call` sends a model request through request admission (any number per cell);
      :meth:`call_sync` does the same from a synchronous generator running in a worker thread.
    """

    __slots__ = (
        "_caller",
        "_correlation",
        "_holder",
        "_rng",
        "_run_id",
        "_seed",
        "attempt",
        "column",
        "row_group",
        "row_index",
    )

    def __init__(
        self,
        caller: ModelCaller,
        *,
        seed: int,
        row_index: int,
        row_group: int,
        column: str,
        attempt: int,
        correlation: RuntimeCorrelation | None,
        run_id: str | None = None,
        holder: object | None = None,
    ) -> None:
        self._caller = caller
        self._run_id = run_id
        self._holder = holder
        self._seed = seed
        self._rng: random.Random | None = None
        self.row_index = row_index
        self.row_group = row_group
        self.column = column
        self.attempt = attempt
        self._correlation = correlation

    @property
    def correlation(self) -> RuntimeCorrelation:
        """The correlation of this cell attempt (the one its events carry)."""
        correlation = self._correlation
        if correlation is None:
            correlation = current_correlation()
            if correlation is None or correlation.column != self.column:
                correlation = RuntimeCorrelation(
                    run_id=self._run_id,
                    row_group=self.row_group,
                    row=self.row_index,
                    column=self.column,
                    task_execution_id=f"{self.column}:{self.row_index}#{self.attempt}",
                )
            self._correlation = correlation
        return correlation

    @property
    def rng(self) -> random.Random:
        """This cell's reproducible random generator (seeded on first use)."""
        rng = self._rng
        if rng is None:
            rng = self._rng = random.Random(cell_seed(self._seed, self.row_index, self.column))
        return rng

    async def call(self, model: str, request: ModelRequest | str) -> ModelResponse:
        """Send ``request`` (or a prompt string, as one user message) to endpoint alias ``model``.

        Goes through request admission and the executor's retries. A checkpoint; raises what
        :meth:`~sluicegate.requests.ModelRequestExecutor.execute` raises.
        """
        if isinstance(request, str):
            request = ModelRequest(messages=[{"role": "user", "content": request}])
        return await self._caller.call(model, request, self._holder)

    def call_sync(self, model: str, request: ModelRequest | str) -> ModelResponse:
        """:meth:`call` from a synchronous generator (it runs in a worker thread)."""
        return trio.from_thread.run(self.call, model, request)

    def __repr__(self) -> str:
        return (
            f"CellContext(column={self.column!r}, row_index={self.row_index}, "
            f"row_group={self.row_group}, attempt={self.attempt})"
        )
