"""``sluicegate validate PIPELINE``: every build-time problem, without running anything.

Checks, collecting every problem rather than stopping at the first: the file's TOML, its
tables and keys (with did-you-mean), each column (kind, keys, types, references, prompt
templates), dependencies and cycles, endpoint aliases, endpoints and providers, the
``[run]`` table and every profile's values, and the cross-field rules of each profile
resolved over the file (``records`` may still come from the command line, so its absence is
not a problem). Missing API-key variables are warnings: CI may validate without secrets.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping

from ..datagen import BUILTIN_PROFILES, ConfigProblem, PipelineConfigError
from ..errors import ConfigurationError
from .exit_codes import EXIT_FAILURE, EXIT_SUCCESS
from .target import PipelineTarget, load_target


def check_target(
    spec: str, profile: str | None, environ: Mapping[str, str]
) -> tuple[PipelineTarget | None, list[ConfigProblem], list[str]]:
    """The loaded target (if it loads), every problem, and warnings."""
    try:
        target = load_target(spec, check_profiles=True)
    except PipelineConfigError as exc:
        return None, list(exc.problems), []
    except ConfigurationError as exc:
        return None, [ConfigProblem.of(exc)], []
    problems: list[ConfigProblem] = []
    warnings: list[str] = []
    if profile is not None:
        try:
            target.resolve(profile=profile, environ=environ, flags={}, flag_origins={})
        except PipelineConfigError as exc:
            problems.extend(
                p for p in exc.problems if not (p.field == "records" and p.problem == "not set")
            )
        except ConfigurationError as exc:
            problems.append(ConfigProblem.of(exc, field="--profile"))
    for endpoint in target.pipeline.endpoints:
        if endpoint.api_key_env and not environ.get(endpoint.api_key_env):
            warnings.append(
                f"endpoint {endpoint.alias!r}: {endpoint.api_key_env} is not set here (a run "
                "needs it)"
            )
    return target, _unique(problems), warnings


def _unique(problems: list[ConfigProblem]) -> list[ConfigProblem]:
    out: list[ConfigProblem] = []
    for problem in problems:
        if problem not in out:
            out.append(problem)
    return out


def validate_command(args: argparse.Namespace) -> int:
    """Print ``ok`` and a one-line description, or every problem; exit 0 or 1."""
    target, problems, warnings = check_target(args.pipeline, args.profile, os.environ)
    for warning in warnings:
        print(f"warning: {warning}")
    if problems:
        count = len(problems)
        print(f"{args.pipeline}: {count} problem{'s' if count > 1 else ''}")
        for problem in problems:
            print(f"  - {problem}")
        return EXIT_FAILURE
    assert target is not None
    pipeline = target.pipeline
    aliases = ", ".join(a for e in pipeline.endpoints for a in e.names) or "none"
    profiles = ", ".join(dict.fromkeys([*BUILTIN_PROFILES, *target.profiles]))
    print(
        f"ok: {args.pipeline}: pipeline {pipeline.name!r}, {len(pipeline.columns)} columns "
        f"({', '.join(c.name for c in pipeline.columns)}), endpoints: {aliases}; profiles: "
        f"{profiles}"
    )
    return EXIT_SUCCESS
