"""`jsonable(value)`: the one JSON-sanitising helper (stored results, audit details, artifacts, API bodies).

A JSON-ready copy, recursively: numpy scalars and arrays become Python numbers and lists,
NaN and ±inf become None (JSON has no such numbers; PostgreSQL's JSON refuses them), tuples and
sets become lists, dict keys become strings, dataclasses and objects with `to_dict()` become
dicts, and anything else becomes `str(value)` (a datetime, a path, an estimator's class).
"""

from __future__ import annotations

import math
from dataclasses import asdict, fields, is_dataclass
from typing import Any

import numpy as np

#: a dataclass field's key in its JSON when that is not its name: `field(metadata={JSON_NAME: "latency_mean_ms"})`
#: (read by `json_fields` and by the API's `schemas.model_of`, so the key is declared once, on the field)
JSON_NAME = "json"


def json_fields(obj: Any, *extra: str) -> dict[str, Any]:
    """A dataclass's fields by their JSON keys (`JSON_NAME`), plus the `extra` attributes (properties), JSON-ready."""
    data = {f.metadata.get(JSON_NAME, f.name): getattr(obj, f.name) for f in fields(obj)}
    data.update({name: getattr(obj, name) for name in extra})
    return jsonable(data)  # type: ignore[no-any-return]


def jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if hasattr(value, "to_dict"):
        return jsonable(value.to_dict())
    if is_dataclass(value) and not isinstance(value, type):
        return jsonable(asdict(value))
    return str(value)


def plain(value: Any) -> Any:
    """A numpy (or any array library's) scalar as the Python scalar: a class label, a prediction."""
    return value.item() if hasattr(value, "item") else value


__all__ = ["JSON_NAME", "json_fields", "jsonable", "plain"]
