"""Pipelines written as TOML files: the same :class:`Pipeline` the Python API builds.

A pipeline file has these tables (every one but ``columns`` is optional)::

    name = "qa"                        # the pipeline's name (default: the file's stem)

    [run]                              # run settings (see sluicegate.datagen.profiles)
    records = 2000

    [endpoints.writer]                 # Endpoint fields; the table key is the alias
    model = "meta/llama-3.1-8b-instruct"
    base_url = "${SLUICEGATE_BASE_URL:-http://127.0.0.1:8000/v1}"

    [providers.sim]                    # provider objects: a tuned SimulatedProvider, or
    latency_seconds = 0.0              # factory = "module:function" (+ options = {...})

    [[columns]]                        # one table per column, in order
    name = "topic"
    kind = "sampler"                   # sampler, llm_text, llm_structured, judge,
    categories = ["a", "b"]            # expression, custom

    [profiles.smoke]                   # named profiles (extend the built-in of that name)
    records = 5

    [request_admission]                # RequestAdmissionConfig (AIMD, windows, circuit)

Generators, schemas, filters and provider factories are ``module:function`` references;
the directory of the file is importable, so ``generators.py`` beside it works.

:func:`load_pipeline_file` checks everything it can before building, collecting every problem
(each with its dotted field, the line, and a did-you-mean for unknown keys) into one
:class:`~sluicegate.datagen.PipelineConfigError`.
"""

from __future__ import annotations

import os
import re
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import attrs
import msgspec
from attrs import frozen

from .._internal.checks import describe, did_you_mean
from ..errors import ConfigurationError
from ..events import EventSink, JsonLinesEventSink
from ..providers import SimulatedProvider
from ..requests import Provider, RequestAdmissionConfig
from .columns import Column
from .config_problems import ConfigProblem, PipelineConfigError, unknown_fix
from .endpoints import Endpoint
from .pipeline import Pipeline
from .profiles import (
    BUILTIN_PROFILES,
    LAYER_FILE,
    LAYER_FILE_PROFILE,
    ResolvedSettings,
    SettingLayer,
    check_table,
    environment_layer,
    profile_layers,
    resolve_settings,
)
from .toml_columns import build_column, check_pipeline_shape
from .toml_lines import TomlLines

if TYPE_CHECKING:
    from .result import RunResult

TOP_LEVEL_KEYS: Final = (
    "name",
    "description",
    "run",
    "endpoints",
    "providers",
    "columns",
    "profiles",
    "request_admission",
)

_ENDPOINT_KEYS: Final = tuple(k for k in Endpoint.__struct_fields__ if k != "alias")
_SIMULATED_KEYS: Final = tuple(
    a.name
    for a in attrs.fields(SimulatedProvider)
    if a.init and a.name not in ("name", "latency", "faults")
)
_FACTORY_KEYS: Final = ("factory", "options")
_PROVIDER_KINDS: Final = ("simulated", "factory")
_ENV_REFERENCE: Final = re.compile(
    r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}"
)


@frozen
class PipelineFile:
    """A loaded pipeline file: the :class:`Pipeline`, its ``[run]`` settings, its profiles and
    its request-admission config. :meth:`resolve` layers them with a profile, the environment
    and overrides; :meth:`run` runs the pipeline with the result."""

    path: Path
    pipeline: Pipeline
    run_layer: SettingLayer
    profiles: Mapping[str, SettingLayer]
    request_config: RequestAdmissionConfig | None = None
    description: str = ""

    def resolve(
        self,
        *,
        profile: str | None = None,
        environ: Mapping[str, str] | None = None,
        overrides: Mapping[str, Any] | None = None,
        override_origins: Mapping[str, str] | None = None,
    ) -> ResolvedSettings:
        """Every setting resolved: defaults < ``[run]`` < profile < ``environ``'s
        ``SLUICEGATE_*`` < ``overrides`` (``"none"`` clears). Raises
        :class:`PipelineConfigError` listing every problem."""
        layers = [self.run_layer, *profile_layers(profile, self.profiles)]
        if environ is not None:
            layers.append(environment_layer(environ)[0])
        if overrides:
            layers.append(
                SettingLayer("command line", 5, dict(overrides), dict(override_origins or {}))
            )
        return resolve_settings(layers, profile=profile, subject=str(self.path))

    def run(
        self,
        *,
        profile: str | None = None,
        output_dir: str | None = None,
        events: EventSink | bool | None = None,
        **overrides: Any,
    ) -> RunResult:
        """Run the pipeline with its resolved settings (``overrides`` are settings, the
        highest layer); the environment is not read here. ``events`` defaults to the
        ``events`` setting (``True``: ``events.jsonl.gz`` in the run directory; a path)."""
        resolved = self.resolve(profile=profile, overrides=overrides)
        out = output_dir or resolved["output_dir"]
        owned = None
        if events is None:
            setting = resolved["events"]
            events = owned = JsonLinesEventSink(setting) if isinstance(setting, str) else None
            if owned is None:
                events = bool(setting)
        try:
            return self.pipeline.run(
                resolved.records,
                output_dir=out,
                events=events,
                request_config=resolved.request_config(self.request_config),
                **resolved.run_options(),
            )
        finally:
            if owned is not None:
                owned.close()


class _Problems:
    """Collects problems with the file and line of each dotted path."""

    def __init__(self, source: str, lines: TomlLines) -> None:
        self.source = source
        self.lines = lines
        self.items: list[ConfigProblem] = []

    def add(self, path: tuple[str | int, ...], problem: str, fix: str) -> None:
        self.items.append(ConfigProblem(_dotted(path), problem, fix, self.source, self.line(path)))

    def error(self, path: tuple[str | int, ...], exc: ConfigurationError, key: str = "") -> None:
        """A raised error at ``path``; the error's own field (minus the object it names, as in
        ``Endpoint('w').timeout``) extends the path unless ``key`` is given."""
        full = (*path, key) if key else (*path, *_field_path(exc.field))
        self.items.append(
            ConfigProblem(_dotted(full), exc.problem, exc.fix, self.source, self.line(full))
        )

    def unknown(self, path: tuple[str | int, ...], key: str, known: tuple[str, ...]) -> None:
        hint = did_you_mean(key, known)
        self.add((*path, key), f"unknown key{hint}", unknown_fix(hint, known))

    def line(self, path: tuple[str | int, ...]) -> int | None:
        return self.lines.line(path)


def _dotted(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _field_path(field: str) -> tuple[str, ...]:
    """``column 'q'.prompt`` -> ``("prompt",)``; ``scheduling.weight`` -> both parts."""
    parts = field.split(".")
    while parts and (not parts[0].isidentifier() or parts[0][:1].isupper()):
        parts.pop(0)
    return tuple(parts) if all(p.isidentifier() for p in parts) else ()


def load_pipeline_file(
    path: str | os.PathLike[str], *, check_profiles: bool = False
) -> PipelineFile:
    """Read, check and build a pipeline file (see the module docstring).

    Raises :class:`PipelineConfigError` listing every problem found: TOML syntax, unknown keys
    (with a did-you-mean), bad values, columns that cannot be built, dependencies and endpoint
    aliases that name nothing, cycles, bad profiles and run settings. With ``check_profiles``
    every profile (and no profile) is also resolved over the file's ``[run]`` table, so the
    cross-field rules are checked too (``records`` may still come from a flag: its absence is
    not a problem).
    """
    file = Path(path)
    source = str(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise PipelineConfigError(
            [ConfigProblem("pipeline", f"cannot read {source} ({exc.strerror})", "check the path")],
            subject=source,
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None)
        raise PipelineConfigError(
            [ConfigProblem("toml", str(exc), "fix the TOML syntax", source, line)], subject=source
        ) from None
    folder = str(file.resolve().parent)
    if folder not in sys.path:  # so 'module:function' finds modules beside the file
        sys.path.insert(0, folder)
    problems = _Problems(source, TomlLines(text))
    return _build(data, file, problems, check_profiles)


def _profile_problems(
    run_layer: SettingLayer, profiles: Mapping[str, SettingLayer], problems: _Problems
) -> None:
    """The cross-field problems of ``[run]`` alone, then those a profile adds."""
    seen: set[tuple[str, str]] = set()
    for name in (None, *dict.fromkeys([*BUILTIN_PROFILES, *profiles])):
        try:
            resolve_settings([run_layer, *profile_layers(name, profiles)])
        except PipelineConfigError as exc:
            for p in exc.problems:
                if (p.field, p.problem) in seen or (p.field, p.problem) == ("records", "not set"):
                    continue
                seen.add((p.field, p.problem))
                first = p.field.split(" + ")[0]
                path: tuple[str | int, ...] = ("run", first)
                if name is not None and first in getattr(profiles.get(name), "values", {}):
                    path = ("profiles", name, first)
                label = f"profile {name!r}: " if name else ""
                problems.items.append(
                    ConfigProblem(
                        label + p.field, p.problem, p.fix, problems.source, problems.line(path)
                    )
                )


def _build(
    data: dict[str, Any], file: Path, problems: _Problems, check_profiles: bool
) -> PipelineFile:
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            problems.unknown((), key, TOP_LEVEL_KEYS)
    name = data.get("name", file.stem)
    if not isinstance(name, str) or not name:
        problems.add(("name",), f"got {describe(name)}", "name the pipeline with a string")
        name = file.stem
    description = data.get("description", "")
    run_layer = _settings_table(data.get("run", {}), ("run",), "file [run]", LAYER_FILE, problems)
    profiles = _profiles(data.get("profiles", {}), problems)
    if check_profiles:
        _profile_problems(run_layer, profiles, problems)
    endpoints = _endpoints(data.get("endpoints", {}), problems)
    providers = _providers(data.get("providers", {}), problems)
    request_config = _request_config(data.get("request_admission"), problems)
    columns = _columns(data.get("columns"), problems)
    declared = {alias for e in endpoints for alias in e.names}
    names = {c["name"] for c in data.get("columns") or () if isinstance(c, dict) and "name" in c}
    check_pipeline_shape(
        columns, declared if "endpoints" in data else None, problems, all_names=names
    )
    if problems.items:
        problems.items.sort(key=lambda p: p.line if p.line is not None else 0)
        raise PipelineConfigError(problems.items, subject=problems.source)
    try:
        pipeline = Pipeline(
            [column for _, column in columns], endpoints, providers=providers, name=name
        )
    except ConfigurationError as exc:  # anything the shape checks above did not foresee
        problems.error(("columns",), exc)
        raise PipelineConfigError(problems.items, subject=problems.source) from None
    return PipelineFile(
        path=file,
        pipeline=pipeline,
        run_layer=run_layer,
        profiles=profiles,
        request_config=request_config,
        description=description if isinstance(description, str) else "",
    )


def _table(value: Any, path: tuple[str | int, ...], problems: _Problems) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    problems.add(path, f"got {describe(value)}", "make it a table ([name] or {key = value})")
    return {}


def _settings_table(
    value: Any, path: tuple[str, ...], label: str, rank: int, problems: _Problems
) -> SettingLayer:
    table = _table(value, path, problems)

    def locate(key: str) -> tuple[str | None, int | None]:
        return problems.source, problems.line((*path, key))

    values, found = check_table(table, where=_dotted(path), locate=locate)
    problems.items.extend(found)
    origins = {}
    for key in values:
        line = problems.line((*path, key))
        origins[key] = problems.source if line is None else f"{problems.source}:{line}"
    return SettingLayer(label, rank, values, origins)


def _profiles(value: Any, problems: _Problems) -> dict[str, SettingLayer]:
    out: dict[str, SettingLayer] = {}
    for name, table in _table(value, ("profiles",), problems).items():
        label = f"profile {name!r}"
        out[name] = _settings_table(table, ("profiles", name), label, LAYER_FILE_PROFILE, problems)
    return out


def _expand(text: str, path: tuple[str | int, ...], problems: _Problems) -> str:
    """``${VAR}`` and ``${VAR:-default}`` from the environment."""

    def one(match: re.Match[str]) -> str:
        name, default = match.group("name"), match.group("default")
        value = os.environ.get(name)
        if value:
            return value
        if default is not None:
            return default
        problems.add(
            path,
            f"the environment variable {name} is not set",
            f"export {name}=..., or write ${{{name}:-default}}",
        )
        return ""

    return _ENV_REFERENCE.sub(one, text)


def _endpoints(value: Any, problems: _Problems) -> list[Endpoint]:
    out: list[Endpoint] = []
    for alias, raw in _table(value, ("endpoints",), problems).items():
        path = ("endpoints", alias)
        table = dict(_table(raw, path, problems))
        for key in list(table):
            if key not in _ENDPOINT_KEYS:
                problems.unknown(path, key, _ENDPOINT_KEYS)
                del table[key]
        before = len(problems.items)
        for key in ("base_url", "model"):
            if isinstance(table.get(key), str):
                table[key] = _expand(table[key], (*path, key), problems)
        if len(problems.items) > before:
            continue  # an unset variable: the URL would only add a second, confusing problem
        endpoint = _convert(Endpoint, {"alias": alias, **table}, path, problems)
        if endpoint is not None:
            out.append(endpoint)
    return out


def _convert(
    kind: type[Any], data: dict[str, Any], path: tuple[str | int, ...], problems: _Problems
) -> Any:
    """``msgspec.convert`` with its errors as problems naming the key."""
    try:
        return msgspec.convert(data, kind)
    except msgspec.ValidationError as exc:
        cause = exc.__cause__
        if isinstance(cause, ConfigurationError):
            problems.error(path, cause)
            return None
        message = str(exc)
        key = ""
        match = re.search(r"- at `\$\.(?P<key>[A-Za-z_]\w*)", message)
        if match:
            key = match.group("key")
            message = message[: match.start()].strip()
        problems.add((*path, key) if key else path, message, "use a value of the expected type")
        return None


def _providers(value: Any, problems: _Problems) -> dict[str, Provider]:
    from .specs import resolve_ref

    out: dict[str, Provider] = {}
    for name, raw in _table(value, ("providers",), problems).items():
        path = ("providers", name)
        table = dict(_table(raw, path, problems))
        kind = table.pop("kind", "simulated")
        if kind not in _PROVIDER_KINDS:
            problems.add(
                (*path, "kind"),
                f"unknown provider kind {kind!r}{did_you_mean(str(kind), _PROVIDER_KINDS)}",
                "use 'simulated' or 'factory'",
            )
            continue
        known = _SIMULATED_KEYS if kind == "simulated" else _FACTORY_KEYS
        for key in list(table):
            if key not in known:
                problems.unknown(path, key, ("kind", *known))
                del table[key]
        try:
            if kind == "simulated":
                out[name] = SimulatedProvider(name=name, **table)
                continue
            factory = resolve_ref(str(table.get("factory", "")), field=f"providers.{name}.factory")
            options = table.get("options", {})
            if not isinstance(options, dict):
                problems.add((*path, "options"), f"got {describe(options)}", "use a table")
                continue
            out[name] = factory(**options)
        except ConfigurationError as exc:
            problems.error(path, exc)
        except TypeError as exc:
            problems.add(path, f"cannot build the provider ({exc})", "check its options")
    return out


def _request_config(value: Any, problems: _Problems) -> RequestAdmissionConfig | None:
    if value is None:
        return None
    try:
        return RequestAdmissionConfig.from_dict(_table(value, ("request_admission",), problems))
    except ConfigurationError as exc:
        parts = tuple(p for p in re.split(r"[.\[\]]+", exc.field) if p)
        path = ("request_admission", *(int(p) if p.isdigit() else p for p in parts))
        problems.items.append(
            ConfigProblem(_dotted(path), exc.problem, exc.fix, problems.source, problems.line(path))
        )
        return None


def _columns(value: Any, problems: _Problems) -> list[tuple[int, Column]]:
    if value is None:
        problems.add(
            ("columns",),
            "no columns",
            'add at least one [[columns]] table with name = "..." and kind = "..."',
        )
        return []
    if not isinstance(value, list):
        problems.add(("columns",), f"got {describe(value)}", "write each column as [[columns]]")
        return []
    out: list[tuple[int, Column]] = []
    for index, raw in enumerate(value):
        column = build_column(index, _table(raw, ("columns", index), problems), problems)
        if column is not None:
            out.append((index, column))
    return out
