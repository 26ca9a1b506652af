"""Data generation: pipelines of columns, run cell by cell on the scheduler.

A :class:`Pipeline` is a list of columns (:func:`sampler`, :func:`llm_text`,
:func:`llm_structured`, :func:`judge`, :func:`expression`, or your own :func:`column`) plus
the :class:`Endpoint` declarations its model columns name. :meth:`Pipeline.run` generates the
rows into a run directory that survives crashes (see ``docs/pipelines.md``).
"""

from __future__ import annotations

from .capacity import AsyncCapacityPlan, CapacityValue, ObservedMaxima
from .columns import CallStyle, Column, column, expression
from .config_problems import ConfigProblem, PipelineConfigError
from .context import CellContext, RowView, cell_seed
from .endpoints import Endpoint
from .errors import (
    CellGenerationError,
    PipelineChangedError,
    PipelineDefinitionError,
    RunDirectoryError,
    SchedulingMetadataError,
    StructuredOutputError,
)
from .llm_columns import JudgeScore, extract_json, judge, llm_structured, llm_text
from .metadata import CELL_KINDS, CellKind, SchedulingMetadata
from .output import OUTPUT_FORMATS, OutputFormat
from .pipeline import Pipeline
from .profiles import (
    BUILTIN_PROFILES,
    ResolvedSettings,
    SettingLayer,
    SettingSource,
    environment_layer,
    profile_layers,
    resolve_settings,
)
from .progress import (
    CheckpointProgress,
    EndpointSnapshot,
    ProgressReporter,
    RunControl,
    RunPhase,
    RunSnapshot,
)
from .result import RUN_STATUSES, RunResult, RunStatus
from .rundir import RowGroupCheckpoint, RunManifest
from .samplers import sampler
from .settings import RunSettings
from .settings_table import SETTINGS, Setting
from .specs import (
    AnyColumnSpec,
    ColumnSpec,
    CustomColumnSpec,
    ExpressionColumnSpec,
    JudgeColumnSpec,
    LLMStructuredColumnSpec,
    LLMTextColumnSpec,
    SamplerColumnSpec,
)
from .templates import PromptTemplate
from .toml_pipeline import PipelineFile, load_pipeline_file

__all__ = [
    "BUILTIN_PROFILES",
    "CELL_KINDS",
    "OUTPUT_FORMATS",
    "RUN_STATUSES",
    "SETTINGS",
    "AnyColumnSpec",
    "AsyncCapacityPlan",
    "CallStyle",
    "CapacityValue",
    "CellContext",
    "CellGenerationError",
    "CellKind",
    "CheckpointProgress",
    "Column",
    "ColumnSpec",
    "ConfigProblem",
    "CustomColumnSpec",
    "Endpoint",
    "EndpointSnapshot",
    "ExpressionColumnSpec",
    "JudgeColumnSpec",
    "JudgeScore",
    "LLMStructuredColumnSpec",
    "LLMTextColumnSpec",
    "ObservedMaxima",
    "OutputFormat",
    "Pipeline",
    "PipelineChangedError",
    "PipelineConfigError",
    "PipelineDefinitionError",
    "PipelineFile",
    "ProgressReporter",
    "PromptTemplate",
    "ResolvedSettings",
    "RowGroupCheckpoint",
    "RowView",
    "RunControl",
    "RunDirectoryError",
    "RunManifest",
    "RunPhase",
    "RunResult",
    "RunSettings",
    "RunSnapshot",
    "RunStatus",
    "SamplerColumnSpec",
    "SchedulingMetadata",
    "SchedulingMetadataError",
    "Setting",
    "SettingLayer",
    "SettingSource",
    "StructuredOutputError",
    "cell_seed",
    "column",
    "environment_layer",
    "expression",
    "extract_json",
    "judge",
    "llm_structured",
    "llm_text",
    "load_pipeline_file",
    "profile_layers",
    "resolve_settings",
    "sampler",
]
