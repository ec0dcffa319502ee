"""What one console process reads: storage, the tracking store and the configs' feature stores and apps,
with the per-process caches of the readers (runs, request-log summaries, monitor histories)."""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field

from raymlops.config import PipelineConfig
from raymlops.console.monitoring import Histories
from raymlops.console.runs import RunIndex
from raymlops.console.traffic import LogSummaries
from raymlops.storage import Storage, open_storage
from raymlops.storage.files import join

REGISTRY_TTL_S = 5.0  # registry reads are reused this long (changes made elsewhere show after at most this)


@dataclass
class Settings:
    """``raymlops console``'s options."""

    storage: str
    tracking_uri: str | None = None
    configs: list[PipelineConfig] = field(default_factory=list)
    read_only: bool = False
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    mlflow_ui: str | None = None  # links to runs in an MLflow UI (a tracking server's own URL)


class Console:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.store: Storage = open_storage(settings.storage)
        self.runs = RunIndex(self.store)
        self.logs = LogSummaries()
        self.histories = Histories()
        self._registry = None
        self._features: dict | None = None
        self._models: dict[str, tuple] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ sources

    def models(self, name: str | None = None):
        """The models page data, kept ``REGISTRY_TTL_S``: MLflow answers a 200-version model in ~100 ms, more
        under load. The console's own promote / rollback clear it, so its pages show their moves at once."""
        from raymlops.console import registry

        key = name or ""
        now = time.monotonic()
        with self._lock:
            hit = self._models.get(key)
        if hit is not None and now - hit[0] < REGISTRY_TTL_S:
            return hit[1]
        got = registry.models(self.registry(), name)
        with self._lock:
            self._models[key] = (now, got)
        return got

    def forget_models(self) -> None:
        with self._lock:
            self._models.clear()

    def warm(self) -> None:
        """Reads everything once (runs, request-log summaries, monitor histories), so the first person to open
        a page after start-up does not wait for the caches: on a large store that is seconds."""
        from raymlops.console import monitoring, traffic

        try:
            self.runs.all()
            for app in self.apps():
                log_store = self.request_log(app)
                traffic.app_info(app, self.serving_dir(app), log_store, self.logs)
                monitoring.page(app, self.monitoring_dir(app), self.variants(app), self.histories)
        except Exception:  # a source that fails now fails again on its page, with its panel
            pass

    def mlflow_ui(self) -> str | None:
        """Where runs link to: ``--mlflow-ui``, else a tracking server's own URL (it serves the MLflow UI)."""
        uri = self.settings.tracking_uri or ""
        return self.settings.mlflow_ui or (uri if uri.startswith(("http://", "https://")) else None)

    def experiment_of(self, mlflow_run_id: str) -> str:
        return self.registry().client.get_run(mlflow_run_id).info.experiment_id

    def registry(self):
        from raymlops.registry import ModelRegistry

        if self.settings.tracking_uri is None:
            raise LookupError("no tracking store: pass --tracking-uri, --config or --storage holding mlflow.db")
        with self._lock:
            if self._registry is None:
                self._registry = ModelRegistry(self.settings.tracking_uri)
        return self._registry

    def feature_stores(self) -> dict:
        from raymlops.features import FeatureStore

        with self._lock:
            if self._features is None:
                self._features = {c.name: FeatureStore(c) for c in self.settings.configs if c.features is not None}
        return self._features

    def apps(self) -> list[str]:
        """Apps with serving state, monitoring or a request log in storage, and the configs' apps."""
        found = set()
        for area in ("serving", "monitoring", "request_log"):
            found |= {d for d in self.store.listdir(area) if not d.startswith(".") and self.store.isdir(area, d)}
        for c in self.settings.configs:
            if c.serving is not None:
                found.add(c.serving.app_name or c.name)
        return sorted(found)

    def _config_of(self, app: str) -> PipelineConfig | None:
        return next(
            (c for c in self.settings.configs if c.serving is not None and (c.serving.app_name or c.name) == app), None
        )

    def serving_dir(self, app: str) -> str | None:
        return self.store.url("serving", app) if self.store.isdir("serving", app) else None

    def request_log(self, app: str) -> Storage | None:
        cfg = self._config_of(app)
        if cfg is not None:
            from raymlops.pipeline.serve import request_log_path

            return open_storage(request_log_path(cfg, app))
        return self.store.child("request_log", app) if self.store.isdir("request_log", app) else None

    def monitoring_dir(self, app: str) -> str:
        return join(self.store.url(), "monitoring", app)

    def variants(self, app: str) -> list[str]:
        return [
            d
            for d in self.store.listdir("monitoring", app)
            if not d.startswith(".") and self.store.isdir("monitoring", app, d)
        ]
