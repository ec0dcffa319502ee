"""HTTP request and response models of the feature server (they make its OpenAPI document exact)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class OnlineFeaturesRequest(BaseModel):
    features: list[str] = Field(min_length=1, description="Feature references 'view:feature' or 'view:*'.")
    entities: dict[str, list[Any]] = Field(min_length=1, description="Join key -> values (equal lengths).")
    full_feature_names: bool = False


class FeatureVector(BaseModel):
    values: list[Any]
    statuses: list[str]
    event_timestamps: list[str | None]


class OnlineFeaturesMetadata(BaseModel):
    feature_names: list[str]


class OnlineFeaturesResponse(BaseModel):
    """Feast's feature-server shape: one result per column (join keys first), values in entity order."""

    metadata: OnlineFeaturesMetadata
    results: list[FeatureVector]


class PushRequest(BaseModel):
    view: str = Field(description="The feature view the events belong to.")
    rows: list[dict[str, Any]] = Field(
        min_length=1,
        description="Events: every stored column of the view (join "
        "keys, timestamp, fields, aggregated columns); the created timestamp "
        "defaults to the time of the push.",
    )


class PushResponse(BaseModel):
    """What was written: the rows, the offline version that holds them, and the online writes."""

    view: str
    rows: int
    offline_version: int
    entities: int = Field(description="Online latest-value records written (newer wins).")
    tiles: int = Field(description="Online window tiles merged.")


def _json_type(t, nullable: bool) -> tuple[Any, dict[str, Any]]:
    """(Python type, Field constraints) of an Arrow column type, as the push and lookup checks take it:
    integers within their width, float32 columns within float32 range; Any for other types."""
    import pyarrow as pa

    from raymlops.data.schema import FLOAT32_MAX, doc_type

    kinds = (
        (pa.types.is_boolean, "boolean"),
        (pa.types.is_integer, "integer"),
        (lambda t: pa.types.is_floating(t) or pa.types.is_decimal(t), "number"),
        (lambda t: pa.types.is_string(t) or pa.types.is_large_string(t), "string"),
        (lambda t: pa.types.is_timestamp(t) or pa.types.is_date(t), "timestamp"),
    )
    kind = next((k for test, k in kinds if t is not None and test(t)), None)
    if kind is None:
        return Any, {}
    py, extra = doc_type(kind, nullable)
    if kind == "integer":
        w = t.bit_width
        lo, hi = (0, 2**w - 1) if pa.types.is_unsigned_integer(t) else (-(2 ** (w - 1)), 2 ** (w - 1) - 1)
        extra.update(ge=max(lo, extra["ge"]), le=min(hi, extra["le"]))
    elif pa.types.is_float32(t) or pa.types.is_float16(t):
        extra.update(ge=-FLOAT32_MAX, le=FLOAT32_MAX)
    return py, extra


def typed_requests(store) -> tuple[Any, Any]:
    """(/online, /push) request models typed by the store's views: references one of the declared features,
    entity keys typed as the offline store keeps them, pushed rows with exactly the view's stored columns
    (null only where allowed) typed by its latest offline schema. Documentation only: the server's own
    checks keep their 422 bodies."""
    from typing import Annotated, Literal, Union

    import pyarrow as pa
    from pydantic import ConfigDict, create_model

    from raymlops.features.build import stored_columns
    from raymlops.features.partition import key_type

    views = list(store.features.views)
    refs = [r for v in views for r in (f"{v.name}:*", *(f"{v.name}:{f}" for f in v.feature_names))]
    schemas = {}
    for v in views:
        try:
            latest = store.offline.latest(v.name)
        except Exception:  # an unreadable store types nothing; the server still validates every request
            latest = None
        schemas[v.name] = latest.schema if latest is not None else None
    key_types: dict[str, Any] = {}
    for v in views:
        for k in store.join_keys(v):
            s = schemas[v.name]
            key_types.setdefault(k, key_type(s.field(k).type) if s is not None and k in s.names else None)
    key_fields = {k: _json_type(t, False) for k, t in key_types.items()}
    entities = create_model(
        "Entities",
        __config__=ConfigDict(extra="forbid"),
        **{
            k: (
                list[Annotated[py, Field(**extra)]],  # type: ignore[valid-type]
                Field(..., min_length=1, description="Values of this join key, one per entity (equal lengths)."),
            )
            for k, (py, extra) in key_fields.items()
        },
    )
    online = create_model(
        "OnlineFeaturesRequestTyped",
        features=(
            list[Literal[tuple(refs)]],
            Field(
                min_length=1,
                description=OnlineFeaturesRequest.model_fields[  # type: ignore[misc]
                    "features"
                ].description,
                json_schema_extra={"uniqueItems": True},
            ),
        ),
        entities=(entities, Field(description="Join key -> values (equal lengths).")),
        full_feature_names=(bool, False),
    )
    pushes = []
    for v in views:
        keys, s = store.join_keys(v), schemas[v.name]
        fields: dict[str, Any] = {}
        for i, c in enumerate(stored_columns(v, keys)):
            t = (
                pa.timestamp("ns", "UTC")
                if c in (v.timestamp, v.created_timestamp)
                else (s.field(c).type if s is not None and c in s.names else None)
            )
            if c in keys and t is not None:
                t = key_type(t)
            required = c != v.created_timestamp
            py, extra = _json_type(t, nullable=c not in (*keys, v.timestamp))
            fields[f"c{i}"] = (py, Field(... if required else None, alias=c, title=c, **extra))
        row = create_model(f"PushRow_{v.name}", __config__=ConfigDict(extra="forbid"), **fields)
        pushes.append(
            create_model(
                f"Push_{v.name}",
                view=(Literal[v.name], ...),  # type: ignore[valid-type]
                rows=(list[row], Field(min_length=1, description=PushRequest.model_fields["rows"].description)),
            )
        )
    return online, (Union[tuple(pushes)] if len(pushes) > 1 else pushes[0])  # type: ignore[return-value]  # noqa: UP007 (a Union of a runtime tuple)
