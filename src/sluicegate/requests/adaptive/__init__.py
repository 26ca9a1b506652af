"""The adaptive (AIMD) request-admission controller, split by concern.

``controller`` composes the parts; see its module docstring for the map.
"""

from __future__ import annotations

from .controller import AdaptiveRequestAdmissionController, RequestPressureReader

__all__ = ["AdaptiveRequestAdmissionController", "RequestPressureReader"]
