"""The PIPELINE argument: a TOML pipeline file, or ``module:attribute`` naming a Python one.

For a Python pipeline the attribute is a :class:`~sluicegate.Pipeline` or a function
returning one; its settings come from built-in profiles, the environment and flags (there is
no ``[run]`` table). The current directory is importable, as with ``python -m``.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from attrs import frozen

from ..datagen import (
    Pipeline,
    PipelineFile,
    ResolvedSettings,
    SettingLayer,
    environment_layer,
    load_pipeline_file,
    profile_layers,
    resolve_settings,
)
from ..datagen.profiles import LAYER_FLAGS
from ..errors import ConfigurationError
from ..requests import RequestAdmissionConfig


@frozen
class PipelineTarget:
    """What PIPELINE named: the pipeline, and its file when it came from one."""

    label: str
    pipeline: Pipeline
    file: PipelineFile | None = None

    @property
    def request_config(self) -> RequestAdmissionConfig | None:
        """The file's ``[request_admission]`` config, if any."""
        return self.file.request_config if self.file is not None else None

    @property
    def profiles(self) -> tuple[str, ...]:
        """Profiles the file declares."""
        return tuple(self.file.profiles) if self.file is not None else ()

    def resolve(
        self,
        *,
        profile: str | None,
        environ: Mapping[str, str],
        flags: Mapping[str, Any],
        flag_origins: Mapping[str, str],
    ) -> ResolvedSettings:
        """Every setting, layered (see :mod:`sluicegate.datagen.profiles`)."""
        if self.file is not None:
            return self.file.resolve(
                profile=profile, environ=environ, overrides=flags, override_origins=flag_origins
            )
        layers: list[SettingLayer] = [
            *profile_layers(profile, {}),
            environment_layer(environ)[0],
            SettingLayer("command line", LAYER_FLAGS, dict(flags), dict(flag_origins)),
        ]
        return resolve_settings(layers, profile=profile, subject=self.label)


def load_target(spec: str, *, check_profiles: bool = False) -> PipelineTarget:
    """Load PIPELINE (see the module docstring); raises :class:`ConfigurationError`.
    ``check_profiles`` resolves every profile of a file too (``validate``)."""
    path = Path(spec)
    if spec.endswith(".toml") or path.is_file():
        file = load_pipeline_file(spec, check_profiles=check_profiles)
        return PipelineTarget(spec, file.pipeline, file)
    if ":" not in spec:
        raise ConfigurationError(
            "PIPELINE",
            f"{spec!r} is neither a pipeline file nor module:attribute",
            "pass a .toml pipeline file, or 'package.module:pipeline' naming a Pipeline",
        )
    return PipelineTarget(spec, _from_module(spec))


def _from_module(spec: str) -> Pipeline:
    module_name, _, attribute = spec.partition(":")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            "PIPELINE", f"cannot import {module_name!r} ({exc})", "check the module name"
        ) from None
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigurationError(
                "PIPELINE",
                f"module {module_name!r} has no {attribute!r}",
                "name a module-level Pipeline (or a function returning one) after the colon",
            ) from None
    if callable(target) and not isinstance(target, Pipeline):
        target = target()
    if not isinstance(target, Pipeline):
        raise ConfigurationError(
            "PIPELINE",
            f"{spec} is a {type(target).__name__}, not a Pipeline",
            "name a sluicegate Pipeline, or a function returning one",
        )
    return target
