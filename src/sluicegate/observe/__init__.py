"""Why was the run slow? Joined timelines, the limiting layer, reports and OpenTelemetry.

This layer sits above data generation, providers, scheduling and requests and reads only
their events: :class:`CorrelatedRuntimeView` joins the scheduler and request streams of a
run into per-task timelines and names the layer that held the run back.
"""

from __future__ import annotations

from .attributes import METRIC_ATTRIBUTES, SPAN_ATTRIBUTES, BoundedAttributes
from .otel import OpenTelemetryEventSink
from .plots import PlotDependencyError, write_pictures
from .report import (
    EndpointLimits,
    LimitChange,
    RunReport,
    build_report,
    events_path,
    generate_report,
    render_row,
    render_text,
    report_from_json,
    report_to_json,
)
from .scenarios import SCENARIOS, Scenario, run_scenario, run_scenario_in_virtual_time
from .series import (
    LAYERS,
    EndpointSeries,
    GroupSeries,
    Layer,
    LayerTime,
    RowProgress,
    RunOccupancy,
)
from .timeline import (
    TIMELINE_FIELDS,
    AttemptTimeline,
    RequestTimeline,
    TaskExecution,
    TaskTimeline,
)
from .verdict import LAYER_TITLES, EndpointSummary, Percentiles, Verdict
from .view import CorrelatedRuntimeView, split_runs

__all__ = [
    "LAYERS",
    "LAYER_TITLES",
    "METRIC_ATTRIBUTES",
    "SCENARIOS",
    "SPAN_ATTRIBUTES",
    "TIMELINE_FIELDS",
    "AttemptTimeline",
    "BoundedAttributes",
    "CorrelatedRuntimeView",
    "EndpointLimits",
    "EndpointSeries",
    "EndpointSummary",
    "GroupSeries",
    "Layer",
    "LayerTime",
    "LimitChange",
    "OpenTelemetryEventSink",
    "Percentiles",
    "PlotDependencyError",
    "RequestTimeline",
    "RowProgress",
    "RunOccupancy",
    "RunReport",
    "Scenario",
    "TaskExecution",
    "TaskTimeline",
    "Verdict",
    "build_report",
    "events_path",
    "generate_report",
    "render_row",
    "render_text",
    "report_from_json",
    "report_to_json",
    "run_scenario",
    "run_scenario_in_virtual_time",
    "split_runs",
    "write_pictures",
]
