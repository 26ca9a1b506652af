"""A pipeline: columns and the endpoints they call, checked when it is built.

Building a :class:`Pipeline` rejects, with errors naming the column and the fix: duplicate
names, dependencies (or template placeholders) naming no column, dependency cycles, and
endpoint aliases that are not declared. Running it (:meth:`Pipeline.run`,
:meth:`Pipeline.arun`) generates the rows into a run directory (see :mod:`.runner`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import msgspec
import trio

from .._internal.checks import describe, did_you_mean
from ..events import EventSink
from ..requests import Provider, RequestAdmissionConfig
from .columns import Column
from .endpoints import Endpoint, check_endpoints, unknown_alias
from .errors import PipelineDefinitionError
from .progress import ProgressReporter, RunControl
from .settings import RunSettings
from .specs import CustomColumnSpec, ExpressionColumnSpec, code_digest

if TYPE_CHECKING:
    from .result import RunResult
    from .rundir import RunManifest


class Pipeline:
    """Columns plus the endpoints they call. Immutable once built.

    ``endpoints`` declares every model alias the columns use; when it is empty, each alias a
    column names is served by its own simulated endpoint (the embedded default, no network).
    ``providers`` maps provider names to :class:`~sluicegate.requests.Provider` objects that
    serve endpoints instead of the built-in ones (a tuned ``SimulatedProvider``, a test double).
    """

    def __init__(
        self,
        columns: Sequence[Column],
        endpoints: Sequence[Endpoint] = (),
        *,
        providers: Mapping[str, Provider] | None = None,
        name: str = "pipeline",
    ) -> None:
        if not isinstance(name, str) or not name:
            raise PipelineDefinitionError("Pipeline.name", f"got {name!r}", "name the pipeline")
        self.name = name
        self.columns: tuple[Column, ...] = tuple(columns)
        for index, column in enumerate(self.columns):
            if not isinstance(column, Column):
                raise PipelineDefinitionError(
                    f"Pipeline.columns[{index}]",
                    f"{describe(column)} is not a Column",
                    "build columns with sg.column(...) or a helper such as sg.llm_text(...)",
                )
        if not self.columns:
            raise PipelineDefinitionError("Pipeline.columns", "is empty", "add at least one column")
        self.index: dict[str, int] = {}
        for position, column in enumerate(self.columns):
            if column.name in self.index:
                raise PipelineDefinitionError(
                    f"column {column.name!r}",
                    "is declared twice",
                    "give every column a unique name",
                )
            self.index[column.name] = position
        self._check_dependencies()
        self.order: tuple[int, ...] = self._topological_order()
        self.endpoints: tuple[Endpoint, ...] = self._endpoints(tuple(endpoints))
        self.providers: dict[str, Provider] = dict(providers or {})

    # -- checks ---------------------------------------------------------------------------

    def _check_dependencies(self) -> None:
        for column in self.columns:
            for dep in column.depends_on:
                if dep in self.index:
                    continue
                field = f"column {column.name!r}.depends_on"
                problem = f"unknown column {dep!r}"
                if hasattr(column.spec, "prompt"):
                    field = f"column {column.name!r}.prompt"
                    problem = f"placeholder {{{dep}}} names no column"
                raise PipelineDefinitionError(
                    field,
                    problem + did_you_mean(dep, self.index),
                    "declare that column, fix the name, or double literal braces ({{ }})"
                    if "prompt" in field
                    else "declare that column or fix the name (columns: "
                    + ", ".join(self.index)
                    + ")",
                )

    def _topological_order(self) -> tuple[int, ...]:
        """Declaration order where possible (Kahn's algorithm, lowest index first)."""
        deps = [[self.index[d] for d in c.depends_on] for c in self.columns]
        left = [len(d) for d in deps]
        dependents: list[list[int]] = [[] for _ in self.columns]
        for position, upstream in enumerate(deps):
            for dep in upstream:
                dependents[dep].append(position)
        ready = sorted(i for i, n in enumerate(left) if n == 0)
        order: list[int] = []
        while ready:
            position = ready.pop(0)
            order.append(position)
            for child in dependents[position]:
                left[child] -= 1
                if left[child] == 0:
                    ready.append(child)
                    ready.sort()
        if len(order) < len(self.columns):
            raise self._cycle_error(deps, set(order))
        return tuple(order)

    def _cycle_error(self, deps: list[list[int]], done: set[int]) -> PipelineDefinitionError:
        # Walk dependencies from a column in the cycle until one repeats.
        start = next(i for i in range(len(self.columns)) if i not in done)
        path = [start]
        while True:
            nxt = next(d for d in deps[path[-1]] if d not in done)
            if nxt in path:
                cycle = [*path[path.index(nxt) :], nxt]
                break
            path.append(nxt)
        names = " -> ".join(self.columns[i].name for i in reversed(cycle))
        return PipelineDefinitionError(
            f"column {self.columns[cycle[0]].name!r}.depends_on",
            f"dependency cycle: {names}",
            "remove one of these dependencies",
        )

    def _endpoints(self, endpoints: tuple[Endpoint, ...]) -> tuple[Endpoint, ...]:
        used = [c for c in self.columns if c.model is not None]
        if not endpoints:
            seen: dict[str, None] = {}
            for column in used:
                assert column.model is not None
                seen[column.model] = None
            return tuple(Endpoint(alias, model=alias) for alias in seen)
        by_alias = check_endpoints(endpoints)
        for column in used:
            assert column.model is not None
            if column.model not in by_alias:
                raise unknown_alias(column.model, by_alias, f"column {column.name!r}.model")
        return endpoints

    # -- descriptions ---------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """The pipeline as plain builtins: its columns (specs) and endpoints."""
        return {
            "name": self.name,
            "columns": [column.describe() for column in self.columns],
            "endpoints": msgspec.json.decode(msgspec.json.encode(self.endpoints)),
        }

    def fingerprint_parts(self, settings: RunSettings) -> dict[str, str]:
        """Digests of everything that decides the output: each column (its spec and the code
        of its generator and filter), each endpoint's provider and model, and the output
        settings. A resumed run compares them part by part to say what changed."""
        parts: dict[str, str] = {}
        for column in self.columns:
            # Helper columns are fully described by their spec; user code is digested.
            user_code = isinstance(column.spec, (CustomColumnSpec, ExpressionColumnSpec))
            codes = [code_digest(column.generator)] if user_code else []
            if column.keep_if is not None:
                codes.append(code_digest(column.keep_if))
            parts[f"column:{column.name}"] = _digest([column.describe(), codes])
        for endpoint in self.endpoints:
            for alias in endpoint.names:
                parts[f"endpoint:{alias}"] = _digest([endpoint.provider_name, endpoint.model])
        parts["settings"] = _digest(settings.output_settings())
        return parts

    # -- running --------------------------------------------------------------------------

    def run(
        self,
        records: int,
        *,
        output_dir: str | None = None,
        overwrite: bool = False,
        force: bool = False,
        control: RunControl | None = None,
        progress: ProgressReporter | None = None,
        events: EventSink | bool | str | os.PathLike[str] | None = None,
        run_id: str | None = None,
        request_config: RequestAdmissionConfig | None = None,
        **options: Any,
    ) -> RunResult:
        """Generate ``records`` rows (see :meth:`arun`) in a new trio run."""
        return trio.run(
            lambda: self.arun(
                records,
                output_dir=output_dir,
                overwrite=overwrite,
                force=force,
                control=control,
                progress=progress,
                events=events,
                run_id=run_id,
                request_config=request_config,
                **options,
            )
        )

    async def arun(
        self,
        records: int,
        *,
        output_dir: str | None = None,
        overwrite: bool = False,
        force: bool = False,
        control: RunControl | None = None,
        progress: ProgressReporter | None = None,
        events: EventSink | bool | str | os.PathLike[str] | None = None,
        run_id: str | None = None,
        request_config: RequestAdmissionConfig | None = None,
        **options: Any,
    ) -> RunResult:
        """Generate ``records`` rows into ``output_dir`` and return the :class:`RunResult`.

        ``options`` are :class:`RunSettings` fields (``seed``, ``buffer_size``, ``exact``,
        ``output_format``...). ``output_dir`` defaults to a new temporary directory. An
        existing run directory of the same pipeline is resumed; one of a different pipeline
        is refused (:class:`PipelineChangedError`) unless ``force`` (resume anyway) or
        ``overwrite`` (start over). Scheduler and request events go to ``events.jsonl.gz`` in
        the run directory (``sluicegate report`` reads them) unless ``events=False``; a path
        gets them instead (gzip when it ends in ``.gz``), or an :class:`EventSink` receives
        them. Anything else is a :class:`~sluicegate.ConfigurationError` naming ``events``.
        """
        from .runner import PipelineRun

        settings = RunSettings.from_options(records, options)
        run = PipelineRun(
            self,
            settings,
            output_dir=output_dir,
            overwrite=overwrite,
            force=force,
            control=control,
            progress=progress,
            events=events,
            run_id=run_id,
            request_config=request_config,
        )
        return await run.run()


def _digest(value: object) -> str:
    data = msgspec.json.encode(value, order="deterministic", enc_hook=repr)
    return hashlib.blake2b(data, digest_size=10).hexdigest()


def fingerprint_of(parts: Mapping[str, str]) -> str:
    """One digest over every part."""
    return _digest(sorted(parts.items()))


def describe_changes(
    existing: RunManifest,
    parts: Mapping[str, str],
    description: Mapping[str, Any],
    settings: RunSettings,
) -> list[str]:
    """What differs between a run directory's pipeline and settings and these, one line each."""
    old_parts = existing.fingerprint_parts
    changes: list[str] = []
    old_columns = {c["name"]: c for c in existing.pipeline.get("columns", [])}
    new_columns = {c["name"]: c for c in description["columns"]}
    for name in old_columns.keys() - new_columns.keys():
        changes.append(f"column {name!r} removed")
    for name in new_columns.keys() - old_columns.keys():
        changes.append(f"column {name!r} added")
    for name in sorted(old_columns.keys() & new_columns.keys()):
        if old_parts.get(f"column:{name}") == parts.get(f"column:{name}"):
            continue
        old, new = old_columns[name], new_columns[name]
        fields = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
        what = ", ".join(fields) if fields else "generator or filter code"
        changes.append(f"column {name!r}: {what} changed")
    for key in sorted(old_parts.keys() | parts.keys()):
        if key.startswith("endpoint:") and old_parts.get(key) != parts.get(key):
            changes.append(f"{key.replace(':', ' ', 1)} changed (provider or model)")
    new_settings = msgspec.to_builtins(settings.output_settings())
    for name, value in new_settings.items():
        old = existing.settings.get(name)
        if old != value:
            changes.append(f"{name} {old!r} -> {value!r}")
    return changes or ["pipeline fingerprint differs"]
