"""The `features` section: entities, feature views (fields and window aggregations), the online and offline
stores and the feature server; and the duration strings every section uses."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BeforeValidator, Field, field_validator, model_validator

from raymlops.config.base import IMPORT_PATH, Strict

_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
AggFunction = Literal["sum", "mean", "count", "min", "max", "std", "last", "distinct_count"]
AGG_FUNCTIONS: tuple[AggFunction, ...] = get_args(AggFunction)
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
_IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*$"


def duration_seconds(v: str) -> int:
    """'7d' -> 604800 (units s, m, h, d)."""
    m = _DURATION.match(v)
    if m is None:
        raise ValueError(f"got {v!r}; expected a duration like '30s', '15m', '12h' or '7d'")
    return int(m.group(1)) * _UNIT_SECONDS[m.group(2)]


def _check_duration(v: str) -> str:
    m = _DURATION.match(str(v))
    if not m or int(m.group(1)) == 0:
        raise ValueError(f"got {v!r}; expected a positive duration like '30s', '15m', '12h' or '7d'")
    return str(v)


Duration = Annotated[str, AfterValidator(_check_duration)]


class SqliteOnlineStoreConfig(Strict):
    """The online store in a SQLite file, for one machine (a cluster of several nodes needs Redis)."""

    type: Literal["sqlite"] = Field("sqlite", description="Store kind.")
    path: str | None = Field(None, description="SQLite file; default <storage>/features/online.db.")


class RedisOnlineStoreConfig(Strict):
    """The online store in Redis: what a cluster of several nodes needs."""

    type: Literal["redis"] = Field(description="Store kind.")
    url: str = Field("redis://127.0.0.1:6379/0", description="redis://, rediss:// or unix:// URL of a Redis server.")
    key_prefix: str | None = Field(None, description="Prefix of every key; default the pipeline name.")

    @field_validator("url")
    @classmethod
    def _scheme(cls, v: str) -> str:
        if not v.startswith(REDIS_SCHEMES):
            raise ValueError(f"got {v!r}; expected a redis://host:port/db URL")
        return v


OnlineStoreConfig = Annotated[SqliteOnlineStoreConfig | RedisOnlineStoreConfig, Field(discriminator="type")]


class OfflineStoreConfig(Strict):
    """Where each view's rows are kept as versioned, date-partitioned Parquet (`raymlops features build` writes
    a version; training's point-in-time joins read it)."""

    path: str | None = Field(None, description="Local path or pyarrow/fsspec URI; default <storage>/features/offline.")


class EntityConfig(Strict):
    """What features are about (a customer, a card): the key columns that identify one."""

    name: str = Field(pattern=_IDENTIFIER, description="Entity name, referred to by views' `entity`.")
    join_keys: list[str] = Field(min_length=1, description="Key columns identifying one entity.")
    description: str | None = Field(None, description="Free text for readers of the config.")


class AggregationConfig(Strict):
    """A window aggregate: `function` of `column` over each entity's rows in the trailing `window`."""

    column: str = Field(description="Source column aggregated per entity.")
    function: AggFunction = Field(
        description="The aggregate; last: the latest value in the window; "
        "distinct_count: distinct values in the window."
    )
    window: Duration = Field(description="Rows with T - window < ts <= T count at time T.")
    name: str | None = Field(None, description="Feature name; default <column>_<function>_<window>.")

    @property
    def feature_name(self) -> str:
        return self.name or f"{self.column}_{self.function}_{self.window}"


class FeatureViewConfig(Strict):
    """A group of features of one entity computed from one source: columns passed through and window
    aggregates, each as of its event time."""

    name: str = Field(pattern=_IDENTIFIER, description="View name; features are referred to as 'view:feature'.")
    entity: str = Field(description="Name of an entity under features.entities.")
    source: str = Field(description="Name of a source under 'sources'.")
    timestamp: str = Field(description="Event-time column of the source.")
    created_timestamp: str | None = Field(None, description="Breaks ties between rows with equal event time.")
    ttl: Duration | None = Field(None, description="How old a value may be at retrieval; none = no lower bound.")
    fields: list[str] = Field(default_factory=list, description="Columns passed through as features.")
    aggregations: list[AggregationConfig] = Field(
        default_factory=list, description="Window aggregates, each a feature."
    )
    tile: Duration | None = Field(
        None,
        description="Online time tile of the window aggregates (default 1m, or the "
        "shortest window if shorter): online windows start at the first tile boundary at "
        "or after now - window.",
    )
    transform: str | None = Field(None, description="'module:function' batch transform (pandas) before aggregation.")
    description: str | None = Field(None, description="Free text, shown by `raymlops features list` and `describe`.")
    owner: str | None = Field(None, description="Who owns the view, shown by `raymlops features list` and `describe`.")
    tags: dict[str, str] = Field(
        default_factory=dict, description="Labels, shown by `raymlops features list` and `describe`."
    )

    @field_validator("transform")
    @classmethod
    def _import_path(cls, v: str | None) -> str | None:
        if v is not None and not IMPORT_PATH.fullmatch(v):
            raise ValueError(f"got {v!r}; expected 'package.module:function'")
        return v

    @model_validator(mode="after")
    def _features(self) -> FeatureViewConfig:
        if not self.fields and not self.aggregations:
            raise ValueError("a view needs 'fields', 'aggregations' or both")
        names = self.feature_names
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"feature names {dupes} appear twice; give an aggregation a 'name'")
        if self.tile and not self.aggregations:
            raise ValueError("'tile' applies to window aggregates, and this view has no 'aggregations'")
        short = [a.window for a in self.aggregations if self.tile and duration_seconds(a.window) < self.tile_seconds]
        if short:
            raise ValueError(
                f"tile {self.tile!r} is longer than the windows {short}; a tile must be no longer than "
                "the shortest window"
            )
        return self

    @property
    def tile_seconds(self) -> int:
        """The online tile: ``tile``, else 1 minute or the shortest window if that is shorter."""
        if self.tile:
            return duration_seconds(self.tile)
        return min([60, *(duration_seconds(a.window) for a in self.aggregations)])

    @property
    def feature_names(self) -> list[str]:
        return [*self.fields, *(a.feature_name for a in self.aggregations)]

    @property
    def ttl_seconds(self) -> int | None:
        return duration_seconds(self.ttl) if self.ttl else None


class FeatureServerConfig(Strict):
    """The online feature server (`raymlops features serve`): its own Ray Serve app."""

    route_prefix: str = Field("/features", description="POST {route_prefix}/online serves online features.")
    host: str = Field("127.0.0.1", description="Bind address of Serve's HTTP proxy (shared by every app).")
    port: int = Field(8000, ge=1, le=65535, description="Port of Serve's HTTP proxy (shared by every app).")
    num_replicas: int = Field(1, ge=1, description="Feature server replicas.")
    num_cpus: float = Field(0.25, ge=0, description="CPUs per replica.")
    max_ongoing_requests: int = Field(64, ge=1, description="Requests a replica handles at once.")

    @field_validator("route_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if not v.startswith("/") or (len(v) > 1 and v.endswith("/")):
            raise ValueError(f'got "{v}"; route_prefix must start with "/" and not end with "/"')
        return v


def _online_store_shorthand(v: Any) -> Any:
    """``online_store: sqlite`` or ``online_store: redis://host:6379/0`` (e.g. from ${RAYMLOPS_ONLINE_STORE},
    so one YAML serves a laptop and a cluster) mean the full mappings."""
    if isinstance(v, str):
        if v == "sqlite":
            return {"type": "sqlite"}
        if v.startswith(REDIS_SCHEMES):
            return {"type": "redis", "url": v}
        raise ValueError(f"got {v!r}; expected 'sqlite', a redis:// URL, or a mapping with 'type'")
    return v


class FeaturesConfig(Strict):
    """The feature store: entities, feature views, and the stores and server they are kept and served in."""

    online_store: Annotated[OnlineStoreConfig, BeforeValidator(_online_store_shorthand)] = Field(
        default_factory=SqliteOnlineStoreConfig,
        description="{type: sqlite, path} or {type: redis, url, key_prefix}; the strings 'sqlite' and "
        "'redis://host:port/db' are shorthands. A cluster of several nodes needs Redis.",
    )
    server: FeatureServerConfig = Field(default_factory=FeatureServerConfig, description="The online feature server.")
    offline_store: OfflineStoreConfig = Field(
        default_factory=OfflineStoreConfig, description="Where feature history is kept."
    )
    entities: list[EntityConfig] = Field(min_length=1, description="The entities views are keyed by.")
    views: list[FeatureViewConfig] = Field(min_length=1, description="The feature views.")

    def view(self, name: str) -> FeatureViewConfig:
        return next(v for v in self.views if v.name == name)

    def entity(self, name: str) -> EntityConfig:
        return next(e for e in self.entities if e.name == name)


def feature_ref_issue(ref: str, features: FeaturesConfig | None) -> str | None:
    """Why 'view:feature' (or 'view:*') does not name a declared feature, or None."""
    if features is None:
        return "feature references need a 'features' section"
    view, sep, name = ref.partition(":")
    if not sep or not view or not name:
        return f"got {ref!r}; expected 'view:feature' or 'view:*'"
    views = {v.name: v for v in features.views}
    if view not in views:
        return f"unknown feature view {view!r}; defined: {sorted(views)}"
    if name != "*" and name not in views[view].feature_names:
        return f"view {view!r} has no feature {name!r}; it has {views[view].feature_names}"
    return None
