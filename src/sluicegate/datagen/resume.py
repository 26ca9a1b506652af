"""Opening a run directory: a new run, a resumed one, a refused one, or a fresh start.

:func:`open_run` decides from the directory's manifest:

- no manifest: a new run (a new run id, a manifest listing nothing);
- a manifest of the same pipeline (same fingerprint): resumed; the row groups it lists are kept
  when their file is present with the recorded content hash (others are generated again);
- a manifest of another pipeline or other output settings: :class:`PipelineChangedError`
  listing what changed, unless ``force`` (resume anyway, keeping only row groups whose row
  range is unchanged) or ``overwrite`` (delete the old run's files first).

The journals of unfinished row groups are read later, when the run is laid out
(:meth:`RunDirectory.load_journal`).
"""

from __future__ import annotations

import datetime
import shutil
import tempfile
import uuid
from typing import TYPE_CHECKING

import attrs
import msgspec

from .errors import PipelineChangedError
from .rowgroups import RowGroupPlanner
from .rundir import RunDirectory, RunManifest
from .settings import RunSettings

if TYPE_CHECKING:
    from .pipeline import Pipeline


def utc_now() -> str:
    """Wall-clock time for the manifest (for people; nothing depends on it)."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def planner_for(settings: RunSettings, completed: dict[int, int] | None = None) -> RowGroupPlanner:
    """The row-group planner of ``settings`` (``completed``: group -> passing rows)."""
    return RowGroupPlanner(
        settings.records,
        settings.buffer_size,
        exact=settings.exact,
        max_attempts_factor=settings.max_attempts_factor,
        completed=completed,
    )


@attrs.frozen
class OpenedRun:
    """The directory, its (new or updated) manifest, the run id and whether it resumed."""

    rundir: RunDirectory
    manifest: RunManifest
    run_id: str
    resumed: bool


def open_run(
    pipeline: Pipeline,
    settings: RunSettings,
    *,
    output_dir: str | None,
    overwrite: bool,
    force: bool,
    run_id: str | None,
    io_inline: bool,
) -> OpenedRun:
    """Open (or create) the run directory for this run; see the module docstring."""
    from .pipeline import describe_changes, fingerprint_of

    path = output_dir or tempfile.mkdtemp(prefix=f"sluicegate-{pipeline.name}-")
    rundir = RunDirectory(path, io_inline=io_inline)
    if overwrite and rundir.path.exists():
        for child in ("data", "journal"):
            shutil.rmtree(rundir.path / child, ignore_errors=True)
        for name in ("manifest.json", "capacity_plan.json", "events.jsonl", "events.jsonl.gz"):
            (rundir.path / name).unlink(missing_ok=True)
    rundir.prepare()
    parts = pipeline.fingerprint_parts(settings)
    fingerprint = fingerprint_of(parts)
    description = pipeline.describe()
    output_settings = msgspec.to_builtins(settings.output_settings())
    existing = rundir.load_manifest()
    if existing is None:
        now = utc_now()
        manifest = RunManifest(
            run_id=run_id or uuid.uuid4().hex[:12],
            pipeline_name=pipeline.name,
            fingerprint=fingerprint,
            fingerprint_parts=parts,
            pipeline=description,
            settings=output_settings,
            created_at=now,
            updated_at=now,
        )
        rundir.write_manifest(manifest)
        return OpenedRun(rundir, manifest, manifest.run_id, resumed=False)
    if existing.fingerprint != fingerprint and not force:
        changes = describe_changes(existing, parts, description, settings)
        raise PipelineChangedError(str(rundir.path), changes)
    kept = [c for c in existing.row_groups if rundir.verify_part(c)]
    if force:  # only groups that still hold the same rows may be kept
        planner = planner_for(settings)
        kept = [
            c
            for c in kept
            if (c.row_start, c.row_stop - c.row_start) == planner.group_range(c.index)
        ]
    existing.row_groups = kept
    existing.fingerprint = fingerprint
    existing.fingerprint_parts = parts
    existing.pipeline = description
    existing.settings = output_settings
    existing.status = "running"
    existing.updated_at = utc_now()
    return OpenedRun(rundir, existing, existing.run_id, resumed=True)
