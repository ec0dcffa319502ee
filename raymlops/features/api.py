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
    rows: list[dict[str, Any]] = Field(min_length=1, description="Events: every stored column of the view (join "
                                       "keys, timestamp, fields, aggregated columns); the created timestamp "
                                       "defaults to the time of the push.")


class PushResponse(BaseModel):
    """What was written: the rows, the offline version that holds them, and the online writes."""

    view: str
    rows: int
    offline_version: int
    entities: int = Field(description="Online latest-value records written (newer wins).")
    tiles: int = Field(description="Online window tiles merged.")
