"""Request/response models of the `/mlops` API (pydantic), shared so every endpoint looks alike.

Area modules declare their own models next to their routes and reuse the pieces here:
`WindowQuery` (the monitoring window: model, version, since, until, last), `PageQuery`
(limit, cursor), `Page` (items + next_cursor) and `ErrorBody` (every 4xx/5xx body).
`@route(..., query_model=, request_model=, response_model=)` turns them into validation
and into the OpenAPI document (see `api/openapi.py` and DEVELOPERS.md).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from datetime import datetime, timezone
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    create_model,
    field_validator,
    model_validator,
)

from ..errors import ValidationError
from ..jsonable import JSON_NAME
from ..store.predictions import format_ts

T = TypeVar("T")

MAX_ID = 2**63 - 1  # the largest integer a database id column holds
#: a database id in a query or body: bounded, so a huge number is a 400, not a database overflow
Id = Annotated[int, Field(ge=1, le=MAX_ID)]


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


#: every moment in an answer: ISO-8601 UTC with microseconds and a `Z` (`2026-11-20T05:00:00.000000Z`),
#: the prediction log's `ts` format (DESIGN.md: times are ISO-8601 UTC). A naive value (SQLite gives
#: naive datetimes back) is UTC; the pattern in the document lets the fuzz test hold every answer to it.
Timestamp = Annotated[
    datetime,
    AfterValidator(_utc),
    PlainSerializer(format_ts, return_type=str, when_used="json"),
    WithJsonSchema(
        {"type": "string", "format": "date-time", "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$"},
        mode="serialization",
    ),
]


class APIModel(BaseModel):
    """Base of response models: unknown attributes are an error in our own output."""

    model_config = ConfigDict(extra="forbid")


def _json_type(hint: Any, nullable_floats: bool) -> Any:
    """The type of a dataclass field in JSON: datetimes are `Timestamp`s and, with `nullable_floats`,
    every float may be null (`jsonable` writes NaN and ±inf as null), inside unions and containers too."""
    if hint is datetime:
        return Timestamp
    if hint is float and nullable_floats:
        return float | None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if not args:
        return hint
    converted = tuple(a if a is Ellipsis else _json_type(a, nullable_floats) for a in args)
    if origin in (typing.Union, types.UnionType):
        return typing.Union[converted]  # noqa: UP007 - built from a tuple of types
    if origin in (list, tuple, dict, set, frozenset):
        return origin[converted]
    return hint


def model_of(
    source: type,
    *,
    name: str,
    doc: str | None = None,
    descriptions: dict[str, str] | None = None,
    exclude: tuple[str, ...] = (),
    properties: tuple[str, ...] = (),
    nullable_floats: bool = False,
    **fields: Any,
) -> type[APIModel]:
    """The response model of a dataclass the services return: its fields and types, declared once.

    A field's JSON key is its name, or its `metadata[JSON_NAME]`; `datetime` fields are
    `Timestamp`s. `properties` adds the named read-only properties the JSON carries (typed by
    their return annotation); `nullable_floats` lets every float be null (a `to_dict` through
    `jsonable` writes NaN as null). `fields` adds or overrides fields (`name=(type, default or
    Field(...))`), for what the endpoint adds around the dataclass (e.g. `skipped_lines`) or a
    JSON type that differs from the Python one; `exclude` names dataclass fields the JSON leaves
    out (or nests elsewhere); `descriptions` documents fields by JSON key. A field added to the
    dataclass appears in the OpenAPI document and is checked by the fuzz test with no edit here.
    """
    hints = typing.get_type_hints(source)
    definitions: dict[str, Any] = {}
    for f in dataclasses.fields(source):
        key = f.metadata.get(JSON_NAME, f.name)
        if f.name in exclude or key in exclude:
            continue
        description = (descriptions or {}).get(key)
        if f.default is not dataclasses.MISSING:
            default: Any = Field(default=f.default, description=description)
        elif f.default_factory is not dataclasses.MISSING:
            default = Field(default_factory=f.default_factory, description=description)
        else:
            default = Field(description=description)
        definitions[key] = (_json_type(hints[f.name], nullable_floats), default)
    for prop in properties:
        getter = getattr(source, prop).fget
        hint = typing.get_type_hints(getter)["return"]
        definitions[prop] = (_json_type(hint, nullable_floats), Field(description=(descriptions or {}).get(prop, getter.__doc__)))
    definitions.update(fields)
    model = create_model(name, __base__=APIModel, __doc__=doc or source.__doc__, **definitions)
    return typing.cast(type[APIModel], model)


class RequestModel(BaseModel):
    """Base of request bodies: unknown fields are refused (a typo should not pass silently)."""

    model_config = ConfigDict(extra="forbid")


class QueryModel(BaseModel):
    """Base of query-string models: unknown parameters are ignored, like most HTTP APIs do."""

    model_config = ConfigDict(extra="ignore")


# -- errors ----------------------------------------------------------------------------------
class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. `validation_error`.")
    message: str = Field(description="What went wrong, for people.")
    details: Any = Field(default=None, description="Structured context (invalid fields, known names, ...).")


class ErrorBody(BaseModel):
    """The body of every error answer: `{"error": {"code", "message", "details"}}`."""

    error: ErrorDetail


# -- shared query parameters -------------------------------------------------------------------
class WindowQuery(QueryModel):
    """The window every monitoring endpoint takes (docs/architecture.md: where an endpoint goes)."""

    model: str | None = Field(default=None, max_length=200, description="Model name; required when more than one model is declared.")
    version: str | None = Field(default=None, max_length=50, description="Only records served by this version.")
    since: datetime | None = Field(default=None, description="Window start, ISO-8601 (UTC when no offset is given), inclusive.")
    until: datetime | None = Field(default=None, description="Window end, ISO-8601 (UTC when no offset is given), exclusive.")
    last: int | None = Field(default=None, ge=1, le=1_000_000, description="Only the N most recent records.")

    @field_validator("since", "until")
    @classmethod
    def _as_utc(cls, value: datetime | None) -> datetime | None:
        return _utc(value)

    @field_validator("version")
    @classmethod
    def _version_in_range(cls, value: str | None) -> str | None:
        """A version number must fit a database integer (`2**63` is a 400, not an overflow)."""
        if value is not None:
            try:
                number = int(value)
            except ValueError:
                return value  # a free-form version label: matched as text only
            if not 1 <= number <= MAX_ID:
                raise ValueError(f"version must be between 1 and {MAX_ID}")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> WindowQuery:
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError("since must be before until")
        return self


class PageQuery(QueryModel):
    """Pagination for every list: `limit` items after the opaque `cursor` of the previous page."""

    limit: int = Field(default=100, ge=1, le=1000, description="Most items in one page.")
    cursor: str | None = Field(default=None, max_length=500, description="`next_cursor` of the previous page.")


def id_cursor(cursor: str | None) -> int | None:
    """The id in a list's `next_cursor` (pages of database rows); anything else is a 400."""
    if cursor is None:
        return None
    if not (cursor.isascii() and cursor.isdigit()) or int(cursor) > MAX_ID:  # "²".isdigit() is True
        raise ValidationError("cursor must be the next_cursor of a previous page", details={"fields": {"cursor": "invalid"}})
    return int(cursor)


class Page(APIModel, Generic[T]):
    """One page of a list; `next_cursor` is null on the last page."""

    items: list[T]
    next_cursor: str | None = None


# -- health (public) ---------------------------------------------------------------------------
class ModelHealth(APIModel):
    production_version: int | None


class FleetProblem(APIModel):
    host: str
    model: str
    version: int | None = Field(description="What that host's worker serves (null: nothing).")
    production: int | None


class FleetHealth(APIModel):
    status: Literal["ok", "degraded"] = Field(description="`degraded` when a live worker cannot serve the production version.")
    hosts: list[str] = Field(description="The hosts that disagree with production.")
    problems: list[FleetProblem]


class HealthOut(APIModel):
    """Liveness for load balancers: no logged data, only whether each model can serve."""

    status: Literal["ok", "degraded"]
    reasons: list[str] = Field(description="Why it is degraded (none when ok): models not served, database unreachable, lost log records.")
    models: dict[str, ModelHealth]
    uptime_s: float
    warnings: list[str] = []  # setup problems that do not stop serving (e.g. metrics of one worker only)
    fleet: FleetHealth | None = Field(default=None, description="The fleet's agreement with production (null: database unavailable).")


# -- meta ----------------------------------------------------------------------------------------
class OpenAPIDocument(BaseModel):
    """`GET /api/openapi.json`: an OpenAPI 3.1 document (its own schema is the OpenAPI specification)."""

    model_config = ConfigDict(extra="allow")

    openapi: str
    info: dict[str, Any]
    paths: dict[str, Any]
    components: dict[str, Any]


# -- auth ----------------------------------------------------------------------------------------
class LoginForm(BaseModel):
    """The dashboard login form (application/x-www-form-urlencoded)."""

    token: str = Field(min_length=1, max_length=4096, description="An MLOPS_API_TOKEN; exchanged for a session cookie.")
    next: str | None = Field(default=None, max_length=2000, description="Dashboard path to go to after login.")
