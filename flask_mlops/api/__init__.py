"""The `/mlops/api/...` JSON endpoints: thin adapters that parse, call one service function, render.

Importing the package declares every area's routes on `blueprint.bp` (one module per area).
"""

from __future__ import annotations

from . import experiments, fleet, jobs, liveness, models, monitoring, openapi, prometheus, retrain  # noqa: F401  (declare their routes)
from .blueprint import bp

__all__ = ["bp"]
