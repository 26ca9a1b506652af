"""Why was the run slow? Joined timelines, the limiting layer, reports and OpenTelemetry.

This layer sits above data generation, providers, scheduling and requests and reads only
their events: :class:`CorrelatedRuntimeView` joins the scheduler and request streams of a
run into per-task timelines and names the layer that held the run back.
"""

from __future__ import annotations

from .occupancy import LAYERS, EndpointSeries, GroupSeries, Layer, LayerTime, RunOccupancy
from .scenarios import SCENARIOS, Scenario, run_scenario, run_scenario_in_virtual_time
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
    "SCENARIOS",
    "TIMELINE_FIELDS",
    "AttemptTimeline",
    "CorrelatedRuntimeView",
    "EndpointSeries",
    "EndpointSummary",
    "GroupSeries",
    "Layer",
    "LayerTime",
    "Percentiles",
    "RequestTimeline",
    "RunOccupancy",
    "Scenario",
    "TaskExecution",
    "TaskTimeline",
    "Verdict",
    "run_scenario",
    "run_scenario_in_virtual_time",
    "split_runs",
]
