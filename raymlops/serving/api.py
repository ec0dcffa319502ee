"""HTTP request and response models (they make the OpenAPI document exact)."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse, Response


class PredictRequest(BaseModel):
    instances: list[dict[str, Any]] | None = Field(None, min_length=1, description="Rows as {column: value} objects.")
    entities: list[dict[str, Any]] | None = Field(
        None,
        min_length=1,
        description="Rows of entity keys (plus any non-feature inputs); the features are "
        "fetched from the online store. Only for models trained from a feature set.",
    )
    # Exactly one of the two is required; the ingress answers a 422 naming the field otherwise.


class DataFrameSplit(BaseModel):
    columns: list[str] = Field(description="Column names, in the order of each row of 'data'.")
    data: list[list[Any]] = Field(min_length=1, description="Rows as lists of values, one per column.")
    index: list[Any] | None = Field(None, description="Accepted and ignored (pandas' orient='split').")


class InvocationsRequest(BaseModel):
    """MLflow's scoring protocol (``mlflow models serve``): exactly one of the row fields."""

    dataframe_split: DataFrameSplit | None = Field(None, description="pandas' DataFrame.to_dict(orient='split').")
    dataframe_records: list[dict[str, Any]] | None = Field(
        None, min_length=1, description="pandas' to_dict(orient='records')."
    )
    instances: list[dict[str, Any]] | None = Field(None, min_length=1, description="Rows as {column: value}.")
    inputs: list[dict[str, Any]] | None = Field(None, min_length=1, description="Same as 'instances'.")
    params: dict[str, Any] | None = Field(None, description="Accepted; this endpoint takes no parameters.")


INVOCATION_FIELDS = ("dataframe_split", "dataframe_records", "instances", "inputs")


def invocation_rows(body: InvocationsRequest) -> tuple[str, list[dict], list[dict]]:
    """(field, rows as {column: value}, 422 errors in FastAPI's shape) of an MLflow scoring request."""
    given = [f for f in INVOCATION_FIELDS if getattr(body, f) is not None]
    if len(given) != 1:
        return (
            "",
            [],
            [
                {
                    "loc": ["body", *given[1:2]] if given else ["body"],
                    "type": "value_error",
                    "msg": "send exactly one of " + ", ".join(INVOCATION_FIELDS) + " (MLflow's scoring protocol)",
                }
            ],
        )
    field = given[0]
    if field != "dataframe_split":
        return field, getattr(body, field), []
    split = body.dataframe_split
    bad = [
        {
            "loc": ["body", field, "data", i],
            "type": "value_error",
            "msg": f"row has {len(r)} values for {len(split.columns)} columns",
        }
        for i, r in enumerate(split.data)
        if len(r) != len(split.columns)
    ]
    if len(set(split.columns)) != len(split.columns):
        bad.insert(0, {"loc": ["body", field, "columns"], "type": "value_error", "msg": "column names repeat"})
    return field, [dict(zip(split.columns, r)) for r in split.data], bad[:20]


def json_response(content: Any, status: int = 200):
    """A JSON response encoded with orjson (~10x faster than the json module on prediction bodies); NaN and
    infinities become null. Content orjson cannot encode (integers past 64 bits) falls back to json."""
    try:
        return Response(orjson.dumps(content), status_code=status, media_type="application/json")
    except TypeError:
        return JSONResponse(content, status_code=status)


def unprocessable(errors: list[dict]) -> dict:
    """The body of a 422: ``{"detail": [{"loc": [...], "type": ..., "msg": ...}]}`` (FastAPI's shape)."""
    return {"detail": errors}


class ErrorResponse(BaseModel):
    detail: str = Field(description="What failed.")
    variant: str | None = Field(None, description="The variant that took the request, when one did.")


class PredictResponse(BaseModel):
    predictions: list[Any]
    features: dict[str, list[Any]] | None = Field(None, description="Feature values fetched for 'entities' requests.")
    feature_statuses: dict[str, list[str]] | None = Field(
        None, description="Per fetched value: PRESENT, NOT_FOUND or OUTSIDE_TTL."
    )
    probabilities: list[float] | list[list[float]] | None = Field(
        None, description="Binary: P(classes[1]); multiclass: one list per row in classes order."
    )
    model_version: str = Field(
        description="The model that answered: NAME/VERSION when served from the registry "
        "(models:/NAME@ALIAS or models:/NAME/VERSION), else its run id."
    )
    variant: str = Field(description="The variant that answered.")
    request_id: str


class ColumnInfo(BaseModel):
    name: str
    type: str
    nullable: bool


class SchemaResponse(BaseModel):
    columns: list[ColumnInfo]
    task: str
    label: str | None = None
    classes: list[Any] | None = None
    model_version: str
    variant: str
    entities: bool = Field(False, description="Whether the model is served by entity key (`entities`).")
    entity_columns: list[ColumnInfo] | None = Field(
        None,
        description="With `entities`: what an entity row "
        "carries (join keys and the inputs the "
        "online store does not provide).",
    )


class FeatureDrift(BaseModel):
    test: str
    statistic: float | None = None
    p_value: float | None = Field(
        None,
        description="Batch detectors; online detectors compare the statistic "
        "with a threshold calibrated to the expected run time.",
    )
    threshold: float | None = Field(
        None,
        description="The p-value (batch) or statistic (online) threshold of the "
        "test, after the correction across the window's tests.",
    )
    effect: float | None = Field(
        None,
        description="Effect size: a distance from the reference that does not grow "
        "with the window (see effect_metric).",
    )
    effect_metric: str | None = Field(
        None,
        description="wasserstein_norm (numeric: Wasserstein-1 over the "
        "reference's standard deviation) or jensen_shannon "
        "(categorical, base 2).",
    )
    effect_threshold: float | None = Field(
        None,
        description="reference: chunks: the effect above which the feature "
        "is significant, learned from reference chunks.",
    )
    min_effect: float | None = Field(
        None, description="The configured smallest effect that makes a significant feature drift."
    )
    significant: bool | None = Field(None, description="The test's verdict alone; is_drift also needs min_effect.")
    is_drift: bool


class DriftResponse(BaseModel):
    enabled: bool
    is_drift: bool | None = None
    detector: str | None = None
    prediction_drift: bool | None = None
    model_version: str | None = None
    window: int | None = None
    p_val: float | None = None
    threshold: float | None = None
    reference: str | None = Field(
        None, description="sample (p-value verdicts) or chunks (effect thresholds learned from reference chunks)."
    )
    rows_seen: int = 0
    rows_pending: int = 0
    windows_tested: int = 0
    tested_at: float | None = None
    features: dict[str, FeatureDrift] = Field(default_factory=dict)
    variant: str | None = None


class HealthResponse(BaseModel):
    status: str = Field(description="'ok', or 'degraded' (503) when a variant does not answer.")
    model_version: str | None = Field(description="The first variant's model version.")
    variants: dict[str, str | None] = Field(description="Model version per variant and shadow.")


class CanaryState(BaseModel):
    variant: str
    step: int
    percent: float
    status: str = Field(description="running | rolled_back | complete")
    step_started: float
    reason: str | None = None


class VariantsResponse(BaseModel):
    version: int = Field(description="Bumped at every weight change.")
    weights: dict[str, float] = Field(description="Percent of traffic per variant.")
    canary: CanaryState | None = None
    history: list[dict[str, Any]] = Field(description="Canary events: start, step, hold, rollback, complete.")
    plan: str | None = Field(None, description="Fingerprint of the traffic plan (weights, canary, model versions).")
    window: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Counts of the current canary interval per variant."
    )
    sticky_key: str | None = None
    shadow: list[str]
    variants: list[str]


class MonitoringResponse(BaseModel):
    variant: str
    enabled: bool = Field(description="Whether the variant has a monitor actor (drift or data quality).")
    monitor: dict[str, Any] | None = Field(
        None, description="Latest drift and data-quality results, rows seen and the newest history entries."
    )
    app: dict[str, Any] | None = Field(
        None,
        description="The app monitor: recent events, alert deliveries, live "
        "performance from late labels, retraining steps.",
    )


def _column_type(c: dict) -> tuple[Any, dict[str, Any]]:
    """(Python type, Field constraints) of one input column as validation checks it (numbers also within
    float32 range: the feature matrix's type)."""
    from raymlops.data.schema import FLOAT32_MAX, doc_type

    t, extra = doc_type(c["type"], bool(c.get("nullable")))
    if c["type"] == "number":
        extra.update(ge=-FLOAT32_MAX, le=FLOAT32_MAX)
    return t, extra


def row_model(columns: list[dict], name: str = "Row") -> type[BaseModel]:
    """The request row of one model as a pydantic model: every input column required, typed as validation
    checks it (numbers within float32 range, 64-bit integers, ISO-8601 timestamps), null only where the
    training data had nulls. Other keys are allowed (and ignored), as the ingress does. Documentation only:
    the replicas' own checks keep their 422 bodies."""
    from pydantic import ConfigDict, create_model

    fields: dict[str, Any] = {}
    for i, c in enumerate(columns):  # field names c0, c1, ...: a column may be any string (`_id`, `model_dump`)
        t, extra = _column_type(c)
        fields[f"c{i}"] = (t, Field(..., alias=c["name"], title=c["name"], **extra))
    return create_model(name, __config__=ConfigDict(extra="allow"), **fields)


def split_row(columns: list[dict]) -> Any:
    """One ``dataframe_split`` data row in the documented column order: a tuple typed position by position."""
    from typing import Annotated

    return tuple[tuple(Annotated[t, Field(**extra)] for t, extra in map(_column_type, columns))]  # type: ignore[misc]


def typed_requests(
    columns: list[dict], entities: bool | list[dict], max_rows: int
) -> tuple[type[BaseModel], type[BaseModel]]:
    """(/predict, /invocations) request models whose rows are ``row_model(columns)``; ``entities`` only when
    the model is served by entity key (rows typed by the entity columns when given: join keys and the
    inputs the online store does not provide). Exactly one row field, as the ingress requires (``oneOf``)."""
    from pydantic import ConfigDict, create_model

    row = row_model(columns)

    def rows(description: str):
        return list[row], Field(None, min_length=1, max_length=max_rows, description=description)

    def one_of(fields):
        return ConfigDict(json_schema_extra={"oneOf": [{"required": [f]} for f in fields]})

    predict: dict[str, Any] = {"instances": rows("Rows as {column: value} objects.")}
    if entities:
        entity_row = row_model(entities, "EntityRow") if isinstance(entities, list) else dict[str, Any]
        predict["entities"] = (
            list[entity_row],
            Field(
                None,
                min_length=1,
                max_length=max_rows,  # type: ignore[valid-type]
                description=PredictRequest.model_fields["entities"].description,
            ),
        )
    names = [c["name"] for c in columns]
    split = create_model(
        "DataFrameSplitRows",
        columns=(
            list[str],
            Field(
                description="Column names, in the order of each row of 'data' (documented in the model's order; any "
                "order is accepted).",
                json_schema_extra={"const": names},
            ),
        ),
        data=(
            list[split_row(columns)],
            Field(min_length=1, max_length=max_rows, description="Rows as lists of values, one per column."),
        ),
        index=(list[Any] | None, Field(None, description="Accepted and ignored.")),
    )
    invocations = create_model(
        "InvocationsRequestRows",
        __config__=one_of(INVOCATION_FIELDS),
        dataframe_split=(split, Field(None, description="pandas' DataFrame.to_dict(orient='split').")),
        dataframe_records=rows("pandas' to_dict(orient='records')."),
        instances=rows("Rows as {column: value}."),
        inputs=rows("Same as 'instances'."),
        params=(dict[str, Any] | None, Field(None, description="Accepted; this endpoint takes no parameters.")),
    )
    return create_model("PredictRequestRows", __config__=one_of(list(predict)), **predict), invocations
