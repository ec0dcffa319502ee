"""Model registry on MLflow: log and register a run's model, aliases with promotion gates and history,
and resolving ``models:/NAME@ALIAS`` back to a loadable run bundle."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from raymlops.artifacts.run import REGISTERED
from raymlops.config.base import MODEL_URI
from raymlops.config.models import MAXIMIZE
from raymlops.contracts.calls import Call
from raymlops.errors import RaymlopsError
from raymlops.registry.tracking import TAG, client, tracking_uri, using
from raymlops.storage.staging import cache_root

BUNDLE = "raymlops_run"  # the run's files inside the MLflow model (its extra_files/ folder)
EVENT = f"{TAG}alias_event."
# Files of a run directory that make up the bundle (Tune's state stays out).
BUNDLE_FILES = (
    "config.yaml",
    "meta.json",
    "metrics.json",
    "schema.json",
    "preprocessing.json",
    "reference.parquet",
    "quality.json",
    "drift",
    "model.ubj",
    "model.pkl",
    "report",
    "evaluation.json",
    "lineage.json",
)


class RegistryError(RaymlopsError):
    """A model, version or alias does not exist, or a promotion was refused."""


class NotRegistered(RegistryError):
    """The registered model or the version does not exist."""


class AliasNotSet(RegistryError):
    """The registered model exists but no version holds the alias (yet)."""


class PromotionRefused(RegistryError):
    """A version failed its promotion gate (use --force to override)."""


def parse_uri(uri: str) -> tuple[str, str | None, int | None]:
    """'models:/NAME@ALIAS' -> (NAME, ALIAS, None); 'models:/NAME/3' -> (NAME, None, 3)."""
    m = MODEL_URI.fullmatch(uri)
    if not m:
        raise RegistryError(f"got {uri!r}; expected 'models:/NAME@ALIAS' or 'models:/NAME/VERSION'")
    return m.group(1), m.group(2), int(m.group(3)) if m.group(3) else None


def gate_direction(metric: str) -> str:
    return "max" if metric in MAXIMIZE else "min"


def check_gate(gate: dict, candidate: dict[str, float], champion: dict[str, float] | None) -> tuple[bool, list[str]]:
    """Applies a promotion gate ({metric, min, max, beat_champion_by}); returns (passed, one line per check)."""
    metric = gate["metric"]
    better = gate_direction(metric)
    value = candidate.get(metric)
    if value is None:
        return False, [f"{metric}: the candidate has no recorded value"]
    ok, lines = True, []
    if gate.get("min") is not None:
        passed = value >= gate["min"]
        ok &= passed
        lines.append(f"{metric}={value:.4f} {'>=' if passed else '<'} min {gate['min']}")
    if gate.get("max") is not None:
        passed = value <= gate["max"]
        ok &= passed
        lines.append(f"{metric}={value:.4f} {'<=' if passed else '>'} max {gate['max']}")
    by = gate.get("beat_champion_by")
    if by is not None and champion is not None and champion.get(metric) is not None:
        ref = champion[metric]
        margin = value - ref if better == "max" else ref - value
        passed = margin >= by - 1e-12
        ok &= passed
        lines.append(
            f"{metric}={value:.4f} vs champion {ref:.4f}: better by {margin:+.4f} ({'>=' if passed else '<'} {by})"
        )
    elif by is not None:
        lines.append("no champion to beat")
    return ok, lines


def _os_user() -> str:
    """The OS user ($USER is often unset in containers and services, where the uid still has a name)."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


class ModelRegistry:
    """Registered models, versions, aliases and their history, in the MLflow registry at ``uri``."""

    def __init__(self, uri: str):
        self.uri = uri
        self.client = client(uri)

    @classmethod
    def from_config(cls, cfg) -> ModelRegistry:
        return cls(tracking_uri(cfg.registry, cfg.storage))

    # -------------------------------------------------------------- writing

    def log_model(self, parent_run_id: str, run_dir: Path, model_type: str, sample, pip: dict[str, str]) -> str:
        """Logs the run's model in its MLflow flavour (signature, input example) with the run bundle
        (preprocessing, schema, drift reference, report) as extra files; returns the model URI."""
        import mlflow
        from mlflow.models import infer_signature

        from raymlops.artifacts import Predictor

        predictor = Predictor(run_dir)
        x = predictor.features_of(sample)
        features = sample.__class__(x, columns=predictor.features)
        signature = infer_signature(features, predictor._raw(x))
        with tempfile.TemporaryDirectory() as tmp:
            bundle = Path(tmp) / BUNDLE
            bundle.mkdir()
            for name in BUNDLE_FILES:
                src = run_dir / name
                if src.is_dir():
                    shutil.copytree(src, bundle / name)
                elif src.is_file():
                    shutil.copy2(src, bundle / name)
            kwargs = dict(name="model", signature=signature, input_example=features.head(5), extra_files=[str(bundle)])
            # nested=True: a caller's own active run (a notebook's) stays active and untouched.
            with using(self.uri), mlflow.start_run(run_id=parent_run_id, nested=True):
                if model_type == "xgboost":
                    import mlflow.xgboost

                    info = mlflow.xgboost.log_model(
                        predictor.model, pip_requirements=[f"xgboost=={pip['xgboost']}"], **kwargs
                    )
                else:
                    import logging
                    import warnings

                    import mlflow.sklearn

                    # Known notices, said once here instead of on every run: the model is pickled on purpose
                    # (the run's model.pkl is too; load only models you trust), and MLflow checks the input
                    # example by calling the model on a named frame, which sklearn notes it was fitted without.
                    logging.getLogger("mlflow.sklearn").setLevel(logging.ERROR)
                    with warnings.catch_warnings():
                        warnings.filterwarnings("ignore", message="X has feature names")
                        info = mlflow.sklearn.log_model(
                            predictor.model,
                            serialization_format="pickle",
                            pip_requirements=[f"scikit-learn=={pip['scikit-learn']}"],
                            **kwargs,
                        )
        return info.model_uri

    def register(self, model_uri: str, name: str, tags: dict[str, Any], gate: dict) -> int:
        """Adds a version of ``name`` (created if new) with its gate on a tag; the model's gate, which
        `models promote` enforces, follows the latest registration's config. Returns the version."""
        import mlflow

        # register_model links the version to the logged model (model_id), which tracking servers require.
        # MLflow prints "Registered model ... already exists. Creating a new version" and "Created version"
        # to stderr; raymlops reports the registration itself, so those two lines are held back.
        with using(self.uri), contextlib.redirect_stderr(io.StringIO()):
            mv = mlflow.register_model(
                model_uri,
                name,
                await_registration_for=60,
                tags={**{k: str(v) for k, v in tags.items()}, f"{TAG}gate": json.dumps(gate)},
            )
        if self.gate(name) != gate:
            self.client.set_registered_model_tag(name, f"{TAG}promotion", json.dumps(gate))
        return int(mv.version)

    def tag_version(self, name: str, version: int, tags: dict[str, str]) -> None:
        for k, v in tags.items():
            self.client.set_model_version_tag(name, str(version), k, v)

    def set_alias(
        self,
        name: str,
        alias: str,
        version: int,
        *,
        reason: str,
        forced: bool = False,
        gate: list[str] | None = None,
        by: str | None = None,
    ) -> dict:
        """Points ``alias`` at ``version`` and appends the move to the model's alias history, with who moved
        it (``by``, else this process's OS user)."""
        previous = self.alias_version(name, alias)
        self.client.set_registered_model_alias(name, alias, str(version))
        now = time.time()
        event = {
            "alias": alias,
            "version": int(version),
            "previous": previous,
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
            "forced": forced,
            "reason": reason,
            "by": by or _os_user(),
            "gate": gate or [],
        }
        # Keyed by time and a random suffix: concurrent moves never overwrite each other's record.
        self.client.set_registered_model_tag(
            name, f"{EVENT}{int(now * 1000):014d}.{uuid.uuid4().hex[:6]}", json.dumps(event)
        )
        return event

    def promote(
        self,
        name: str,
        version: int,
        alias: str = "champion",
        force: bool = False,
        by: str | None = None,
        reason: str | None = None,
    ) -> dict:
        """Moves ``alias`` to ``version`` if it passes the model's recorded gate against the alias's current
        holder (by their recorded validation metrics); ``force`` overrides a failed gate and says so, with
        ``reason`` (why the person forced it) recorded beside it."""
        mv = self.version(name, version)
        gate = self.gate(name)
        holder = self.alias_version(name, alias)
        if holder == int(version):
            raise RegistryError(f"{name} version {version} already holds @{alias}")
        candidate = version_metrics(mv)
        champion = version_metrics(self.version(name, holder)) if holder is not None else None
        passed, lines = check_gate(gate, candidate, champion) if gate else (True, ["no gate recorded"])
        if not passed and not force:
            raise PromotionRefused(
                f"{name} version {version} fails the promotion gate for @{alias}:\n  "
                + "\n  ".join(lines)
                + "\n(use --force to promote anyway; it is recorded)"
            )
        why = (
            "manual promotion"
            + (" (forced past a failed gate)" if not passed else "")
            + (f": {reason}" if reason else "")
        )
        return self.set_alias(name, alias, version, reason=why, forced=force and not passed, gate=lines, by=by)

    def rollback(self, name: str, alias: str = "champion", by: str | None = None, reason: str | None = None) -> dict:
        """Moves ``alias`` back to the version it held before its latest move (no gate: that version held
        the alias already), recorded in the alias history as a rollback."""
        moves = [e for e in self.history(name) if e["alias"] == alias]
        if not moves or moves[-1].get("previous") is None:
            raise RegistryError(f"{name}: @{alias} has no previous version to roll back to")
        last = moves[-1]
        why = f"rollback from version {last['version']}" + (f": {reason}" if reason else "")
        return self.set_alias(name, alias, int(last["previous"]), reason=why, by=by)

    # -------------------------------------------------------------- reading

    def gate(self, name: str) -> dict | None:
        raw = self.registered(name).tags.get(f"{TAG}promotion")
        return json.loads(raw) if raw else None

    def version(self, name: str, version: int | str):
        try:
            return self.client.get_model_version(name, str(version))
        except Exception as e:
            if _code(e) == "RESOURCE_DOES_NOT_EXIST":
                raise NotRegistered(f"no version {version} of registered model {name!r} in {self.uri}") from e
            raise

    def alias_version(self, name: str, alias: str) -> int | None:
        """The version ``alias`` points at, or None when the model or the alias does not exist."""
        try:
            return int(self.client.get_model_version_by_alias(name, alias).version)
        except Exception as e:
            if _code(e) in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None
            raise

    def registered(self, name: str):
        try:
            return self.client.get_registered_model(name)
        except Exception as e:
            if _code(e) == "RESOURCE_DOES_NOT_EXIST":
                raise NotRegistered(f"no registered model {name!r} in {self.uri}") from e
            raise

    def resolve_version(self, uri: str):
        """The ModelVersion a ``models:/`` URI names now."""
        name, alias, version = parse_uri(uri)
        if alias is not None:
            v = self.alias_version(name, alias)
            if v is None:
                raise AliasNotSet(f"registered model {name!r} has no alias @{alias} (in {self.uri})")
            version = v
        return self.version(name, version)

    def list_versions(self, name: str) -> list:
        """Every version of ``name`` ([] if the model is not registered)."""
        return _all_pages(
            lambda token: self.client.search_model_versions(
                f"name='{_quote(name)}'", max_results=1000, page_token=token
            )
        )

    def aliases_of(self, name: str, version: int) -> list[str]:
        aliases = self.registered(name).aliases or {}
        return sorted(a for a, v in aliases.items() if int(v) == int(version))

    def history(self, name: str) -> list[dict]:
        """Every alias move of ``name``, oldest first."""
        tags = self.registered(name).tags
        return [json.loads(v) for k, v in sorted(tags.items()) if k.startswith(EVENT)]

    def list(self, name: str | None = None) -> list[dict]:
        """Registered models (or one), each with its versions, aliases and recorded metrics."""
        if name:
            models = [self.registered(name)]
        else:
            models = _all_pages(lambda token: self.client.search_registered_models(max_results=1000, page_token=token))
        out = []
        for m in models:
            versions = sorted(self.list_versions(m.name), key=lambda v: int(v.version))
            aliases: dict[int, list[str]] = {}
            for a, v in (m.aliases or {}).items():
                aliases.setdefault(int(v), []).append(a)
            out.append(
                {
                    "name": m.name,
                    "aliases": dict(m.aliases or {}),
                    "versions": [
                        {
                            "version": int(v.version),
                            "aliases": sorted(aliases.get(int(v.version), [])),
                            "run": v.tags.get(f"{TAG}run_id"),
                            "metrics": version_metrics(v),
                            "created": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(v.creation_timestamp / 1000)),
                        }
                        for v in versions
                    ],
                }
            )
        return out

    def download(self, uri: str, cache_root: str | os.PathLike) -> tuple[Path, Any]:
        """The run bundle of the version ``uri`` names, downloaded once into ``cache_root`` (per tracking
        store); returns (bundle dir, ModelVersion). A complete copy is never replaced, so replicas and
        readers sharing the cache never see files change."""
        import mlflow

        mv = self.resolve_version(uri)
        final = Path(cache_root) / _store_key(self.uri) / mv.name / str(mv.version)
        run_id = mv.tags.get(f"{TAG}run_id")
        if not _complete(final, run_id):
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{mv.version}.", dir=final.parent))
            try:
                # using(): models:/ URIs are resolved through the global registry URI, whatever is passed.
                with using(self.uri):
                    got = Path(
                        mlflow.artifacts.download_artifacts(
                            artifact_uri=f"models:/{mv.name}/{mv.version}",
                            dst_path=str(tmp / "dl"),
                            tracking_uri=self.uri,
                            registry_uri=self.uri,
                        )
                    )
                bundle = got / "extra_files" / BUNDLE
                if not (bundle / "meta.json").is_file():
                    raise RegistryError(
                        f"models:/{mv.name}/{mv.version} was not logged by raymlops (it has no run bundle)"
                    )
                (bundle / REGISTERED).write_text(
                    json.dumps({"name": mv.name, "version": int(mv.version), "run_id": run_id})
                )
                os.replace(bundle, tmp / BUNDLE)
                shutil.rmtree(tmp / "dl")
                if final.exists() and not _complete(final, run_id):  # a stale copy (store was recreated)
                    shutil.rmtree(final)
                try:
                    os.rename(tmp, final)
                except OSError:  # another process published it first
                    if not _complete(final, run_id):
                        raise
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return final / BUNDLE, mv


def _store_key(uri: str) -> str:
    """The folder a tracking store's copies live under: sha256 of its URI as JSON, 10 hex digits."""
    return hashlib.sha256(json.dumps(uri).encode()).hexdigest()[:10]


def _complete(d: Path, run_id: str | None) -> bool:
    meta = d / BUNDLE / "meta.json"
    if not meta.is_file() or not (d / BUNDLE / REGISTERED).is_file():  # (a copy from before versions were named)
        return False
    return run_id is None or json.loads(meta.read_text()).get("run_id") == run_id


def _code(e: Exception) -> str | None:
    return getattr(e, "error_code", None)


def _quote(name: str) -> str:
    return name.replace("'", "\\'")


def _all_pages(search) -> list:
    out, token = [], None
    while True:
        page = search(token)
        out.extend(page)
        token = getattr(page, "token", None)
        if not token:
            return out


def bundle_for(uri: str, tracking_uri_: str, cache_root: str | None = None) -> str:
    """The local run bundle of the version a ``models:/`` URI names now, in this node's cache (or in
    ``cache_root``)."""
    return str(ModelRegistry(tracking_uri_).download(uri, cache_root or registry_cache())[0])


def pinned_for(uri: str, tracking_uri_: str) -> Call:
    """The version a ``models:/`` URI names now, as a location any node resolves to its own copy
    (``raymlops.artifacts.run.local_run``); serving replicas poll it to follow an alias."""
    mv = ModelRegistry(tracking_uri_).resolve_version(uri)
    return Call(call="raymlops.registry.models:bundle_for", args=[f"models:/{mv.name}/{mv.version}", tracking_uri_])


def registry_cache() -> Path:
    """This node's copies of registered models (per node, keyed by tracking store, name and version)."""
    return cache_root() / "registry"


def version_metrics(mv) -> dict[str, float]:
    """The validation metrics recorded on a model version's tags."""
    prefix = f"{TAG}metric."
    return {k[len(prefix) :]: float(v) for k, v in (mv.tags or {}).items() if k.startswith(prefix)}


def load_model(model: str | os.PathLike, storage: str | None = None, tracking_uri_: str | None = None):
    """Loads a Predictor from a run directory, a run id (under ``storage``) or a registry URI
    (``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``, from ``tracking_uri_``, ``$MLFLOW_TRACKING_URI`` or
    the embedded store under ``storage``)."""
    from raymlops.artifacts import Predictor, load_predictor

    if str(model).startswith("models:/"):
        uri = tracking_uri_ or tracking_uri(None, storage)
        bundle, _ = ModelRegistry(uri).download(str(model), registry_cache())
        return Predictor(bundle)
    return load_predictor(model, storage)
