"""The training step: read, split, fit preprocessing, search, and write the run's artifacts."""

from __future__ import annotations

import json
import platform
import shutil
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from raymlops.artifacts import run as layout
from raymlops.config.models import PipelineConfig
from raymlops.config.monitoring import DriftConfig
from raymlops.data.preprocessing import Preprocessor
from raymlops.data.quality import DataProfile
from raymlops.data.schema import Column, InputSchema, arrow_kind, input_columns
from raymlops.data.sources import read_source
from raymlops.data.split import SPLIT_COLUMN, annotate, time_cutoff
from raymlops.data.stats import CategoricalStats, column_stats
from raymlops.errors import DataError
from raymlops.monitoring.drift import fit_inputs, fit_prediction
from raymlops.storage import Staging, Storage
from raymlops.training import TrainSpec, decision, run_search

LABEL = "__label"


def _split_part(df: pd.DataFrame, valid: bool, **split) -> pd.DataFrame:
    """The rows of one side of the split (the split is a pure function of each row)."""
    df = annotate(df, **split)
    return df[df[SPLIT_COLUMN] == valid].drop(columns=[SPLIT_COLUMN])


def _prepare(df: pd.DataFrame, pre: Preprocessor, inputs: list[str], label: str, classes: list | None) -> pd.DataFrame:
    """Raw rows -> model features plus the encoded label column."""
    out = pre.transform(df[inputs]).reset_index(drop=True)
    y = df[label].reset_index(drop=True)
    if classes is not None:
        codes = {c: i for i, c in enumerate(classes)}
        out[LABEL] = y.map(lambda v: codes[v.item() if isinstance(v, np.generic) else v]).astype("int64")
    else:
        out[LABEL] = y.astype("float64")
    return out


def _drop_null_labels(df: pd.DataFrame, label: str) -> pd.DataFrame:
    return df[df[label].notna()]


def _classes(stats: CategoricalStats, label: str, task: str, positive=None) -> list | None:
    """The label's classes in sort order; for binary, [negative, positive] (``positive``: the configured
    positive class, matched by value or by its text, so `positive_class: 1` finds 1 and '1')."""
    if task == "regression":
        return None
    values = sorted(stats.most_frequent(), key=lambda v: (str(type(v)), v))
    if task == "binary" and len(values) != 2:
        raise DataError(f"task 'binary' needs exactly 2 label values in {label!r}; found {values[:10]}")
    if task == "binary" and positive is not None:
        match = [v for v in values if v == positive and type(v) is type(positive)] or [
            v for v in values if str(v).lower() == str(positive).lower()
        ]
        if len(match) != 1:
            raise DataError(f"training.positive_class: got {positive!r}; label {label!r} has values {values}")
        values = [v for v in values if v is not match[0]] + match
    if task == "multiclass" and len(values) < 2:
        raise DataError(f"task 'multiclass' needs at least 2 label values in {label!r}; found {values}")
    return values


def _schema(arrow, inputs: list[str], nulls: dict[str, int], cfg: PipelineConfig, classes) -> InputSchema:
    imputed = {c for s in cfg.training.preprocessing if s.type == "impute" for c in s.columns}
    cols = [Column(c, arrow_kind(arrow.field(c).type), nulls.get(c, 0) > 0 or c in imputed) for c in inputs]
    return InputSchema(cols, label=cfg.training.label, task=cfg.training.task, classes=classes)


def _check_step_columns(steps: list, available: list[str]) -> None:
    """Steps before the first custom one may only name existing feature columns (checked before any work)."""
    for i, step in enumerate(steps):
        if step.type == "custom":
            return
        unknown = [c for c in step.columns if c not in available]
        if unknown:
            raise DataError(
                f"training.preprocessing[{i}] ({step.type}): unknown columns {unknown}; feature columns: {available}"
            )


def _training_table(cfg: PipelineConfig, say: Callable[[str], None]):
    """The rows to train on (a source, or labels joined point-in-time with features), their timestamp
    column, and a description of where they came from."""
    t = cfg.training
    if t.source is not None:
        src = cfg.sources[t.source]
        say(f"reading source {t.source!r} ({src.format}: {src.path})")
        return read_source(src), src.timestamp, {"source": src.model_dump()}
    from raymlops.features.store import FeatureStore

    d = t.dataset
    labels = cfg.sources[d.labels]
    ts = d.event_timestamp or labels.timestamp
    store = FeatureStore(cfg)
    say(f"building the training set: {d.labels!r} joined point-in-time with {len(d.features)} feature reference(s)")
    ds = store.get_historical_features(read_source(labels), d.features, event_timestamp=ts, keep_order=False)
    versions = {v.name: store.offline.latest(v.name).number for v, _ in store.resolve(d.features)}
    return (
        ds.materialize(),
        ts,
        {
            "source": labels.model_dump(),
            "dataset": {
                "labels": d.labels,
                "features": list(d.features),
                "event_timestamp": ts,
                "offline_versions": versions,
            },
        },
    )


PREPARED = ("train", "valid", "valid_raw")  # Parquet folders of the prepare step


def _write(ds, out: Staging, name: str) -> None:
    """Writes Parquet files named by write-task order, so the same data gives the same files; the write
    tasks may run on any node, so they write where every node can (``Staging.target``)."""
    from ray.data import SaveMode
    from ray.data.datasource import FilenameProvider

    class Ordered(FilenameProvider):
        def get_filename_for_task(self, write_uuid: str, task_index: int) -> str:
            return f"part-{task_index:06d}.parquet"

    path, fs = out.target(name)
    # OVERWRITE: names without the write's uuid are allowed; ``out`` is the step's own fresh folder.
    ds.write_parquet(path, filesystem=fs, filename_provider=Ordered(), mode=SaveMode.OVERWRITE)


def _content_sha(store: Storage, *dirs: str) -> str:
    """sha256 over the files' contents in write order (names excluded)."""
    from raymlops.pipeline.fingerprint import digest

    return digest([[store.sha256(*d.split("/"), n) for n in store.listdir(d) if n.endswith(".parquet")] for d in dirs])


@contextmanager
def _row_order_kept():
    """Ray Data keeps row order in this block (same data -> same order -> same model); restored after."""
    from ray.data import DataContext

    opts = DataContext.get_current().execution_options
    saved, opts.preserve_order = opts.preserve_order, True
    try:
        yield
    finally:
        opts.preserve_order = saved


def read_prepared(prep: Storage, name: str):
    """A Parquet folder of the prepare step as a Ray Dataset, its files read in name (= write) order (from
    every node: ``prep`` is the step's storage)."""
    import ray.data

    return ray.data.read_parquet(prep.parquet_files(name), filesystem=None if prep.local else prep.fs)


def prepare(cfg: PipelineConfig, out: Staging, say: Callable[[str], None]) -> dict:
    """The prepare step: read, split, fit preprocessing on the training split and the drift detector on a
    reference sample; writes both splits (preprocessed), the raw validation rows and the fitted state to
    ``out``. Returns the step's summary."""
    with _row_order_kept():
        return _prepare_step(cfg, out, say)


def _prepare_step(cfg: PipelineConfig, out: Staging, say: Callable[[str], None]) -> dict:
    t = cfg.training
    ds, timestamp, origin = _training_table(cfg, say)
    where = f"source {t.source!r}" if t.source else f"the training set (labels {t.dataset.labels!r} + features)"
    names = ds.schema().names
    if t.label not in names:
        raise DataError(f"label column {t.label!r} is not in {where}; columns: {names}")
    unknown = [c for c in t.exclude if c not in names]
    if unknown:
        raise DataError(f"training.exclude names columns not in {where}: {unknown}")
    excluded = {t.label, *t.exclude} | ({timestamp} if timestamp else set())
    _check_step_columns(t.preprocessing, [c for c in names if c not in excluded])
    inputs = input_columns(names, excluded, t.preprocessing)
    if not inputs:
        raise DataError("no input columns left after exclude/select/drop")
    drift = cfg.monitoring.drift if cfg.monitoring else None
    if drift and drift.features != "all" and set(drift.features) - set(inputs):
        raise DataError(
            f"monitoring.drift.features names columns that are not model inputs: "
            f"{sorted(set(drift.features) - set(inputs))}; inputs: {inputs}"
        )
    if drift and isinstance(drift.min_effect, dict) and set(drift.min_effect) - {*inputs, "__prediction__"}:
        raise DataError(
            f"monitoring.drift.min_effect names columns that are not model inputs (or "
            f"'__prediction__'): {sorted(set(drift.min_effect) - {*inputs, '__prediction__'})}; "
            f"inputs: {inputs}"
        )

    say(f"splitting ({t.split.type}, {t.split.fraction:.0%} validation)")
    # Read once; both splits and every statistic below come from these blocks.
    ds = ds.map_batches(_drop_null_labels, fn_kwargs={"label": t.label}, batch_format="pandas").materialize()
    if ds.count() == 0:
        path = cfg.sources[t.source or t.dataset.labels].path
        raise DataError(
            f"{path}: no rows to train on in {where} (rows kept: those whose {t.label!r} label is not null)"
        )
    kwargs, ts = {"kind": t.split.type, "fraction": t.split.fraction}, None
    if t.split.type == "time":
        ts = np.concatenate(
            [
                b[timestamp]
                for b in ds.select_columns([timestamp]).iter_batches(batch_format="numpy", batch_size=1_000_000)
            ]
        )
        kwargs.update(timestamp=timestamp, cutoff=time_cutoff(ts, t.split.fraction))
    else:
        kwargs["seed"] = t.split.seed
    time_range = _time_range(ds, timestamp, ts)
    train_raw = ds.map_batches(_split_part, fn_kwargs={"valid": False, **kwargs}, batch_format="pandas").materialize()
    valid_raw = ds.map_batches(_split_part, fn_kwargs={"valid": True, **kwargs}, batch_format="pandas").materialize()
    n_train, n_valid = train_raw.count(), valid_raw.count()
    if n_train == 0 or n_valid == 0:
        raise DataError(f"the split left {n_train} training and {n_valid} validation rows; need both > 0")
    arrow = ds.schema().base_schema
    kinds = {c: arrow_kind(arrow.field(c).type) for c in inputs}
    numeric = [c for c in inputs if kinds[c] in ("number", "integer", "timestamp")]
    categorical = [c for c in inputs if c not in numeric]
    _, nstats, cstats = column_stats(train_raw, numeric, categorical, rows=n_train)
    nulls = {**{c: s.nulls for c, s in nstats.items()}, **{c: s.nulls for c, s in cstats.items()}}
    classes = (
        _classes(column_stats(ds, categorical=[t.label])[2][t.label], t.label, t.task, t.positive_class)
        if t.task != "regression"
        else None
    )
    say(f"{n_train} training rows, {n_valid} validation rows, {len(inputs)} input columns")

    say(f"fitting {len(t.preprocessing)} preprocessing step(s) on the training split")
    pre = Preprocessor.from_config(t.preprocessing).fit(train_raw.select_columns(inputs), rows=n_train)
    prep_kwargs = {"pre": pre, "inputs": inputs, "label": t.label, "classes": classes}
    train_ds = train_raw.map_batches(_prepare, fn_kwargs=prep_kwargs, batch_format="pandas").materialize()
    valid_ds = valid_raw.map_batches(_prepare, fn_kwargs=prep_kwargs, batch_format="pandas").materialize()
    feature_schema = train_ds.schema().base_schema
    features = [f.name for f in feature_schema if f.name != LABEL]
    non_numeric = [f.name for f in feature_schema if f.name != LABEL and arrow_kind(f.type) in ("string", "timestamp")]
    if non_numeric:
        raise DataError(
            f"columns {non_numeric} are not numeric after preprocessing; "
            "add an 'onehot' or 'ordinal' step for them, or 'drop' them"
        )
    schema = _schema(arrow, inputs, nulls, cfg, classes)
    _write(train_ds, out, "train")
    _write(valid_ds, out, "valid")
    if drift and drift.reference == "chunks":
        _check_chunks(drift, n_valid)
        if timestamp:  # the prediction's reference chunks come from it, in time order as the inputs'
            valid_raw = valid_raw.sort(timestamp)
    _write(valid_raw.select_columns([*inputs, t.label]), out, "valid_raw")
    (out / layout.PREPROCESSING).write_text(pre.to_json())
    layout.write_json(out / layout.SCHEMA, schema.to_dict())

    if t.explore:
        _explore_split(
            train_raw,
            [*inputs, t.label, *([timestamp] if timestamp else [])],
            t.label,
            timestamp,
            out / layout.EXPLORE_DIR,
            say,
        )
    reference = _reference(
        train_raw, inputs, timestamp, n_train, drift, t.split.seed if t.split.type == "random" else 0
    )
    reference.to_parquet(out / layout.REFERENCE, index=False)
    DataProfile.from_stats(schema.columns, nstats, cstats, n_train).save(out / layout.QUALITY)
    if drift:
        say(f"fitting the drift detector ({drift.detector}) on the reference sample")
        monitored = [c for c in schema.columns if drift.features == "all" or c.name in drift.features]
        untested = fit_inputs(reference, monitored, drift.model_dump(), out / layout.DRIFT_DIR)
        if untested:
            say(f"  drift detector {drift.detector!r} leaves {untested} untested (not its column kind)")
    return {
        "classes": classes,
        "feature_columns": features,
        "input_columns": inputs,
        "rows": {"train": n_train, "valid": n_valid},
        "origin": origin,
        "time_range": time_range,
        "data_sha256": _content_sha(out.shared, "train", "valid"),
        "holdout_sha256": _content_sha(out.shared, "valid_raw"),
    }


def _explore_split(
    train_raw, columns: list[str], label: str, timestamp: str | None, out: Path, say: Callable[[str], None]
) -> None:
    """training.explore: the training split's profile, beside the run's other artifacts."""
    from raymlops.explore import explore

    profile = explore(
        train_raw.select_columns(list(dict.fromkeys(columns))), label=label, time=timestamp, name="training split"
    )
    profile.save(out / "training.html")
    say(f"explored the training split ({len(profile.warnings)} warning(s)): {out / 'training.html'}")


def _time_range(ds, timestamp: str | None, ts=None) -> list[str | None]:
    """[first, last] event time of the rows trained on (ISO, UTC), or [] without a timestamp column: one
    aggregation pass, or none when a time split already read the column."""
    if not timestamp:
        return []
    if ts is None:
        from ray.data.aggregate import Max, Min

        got = ds.aggregate(Min(timestamp), Max(timestamp))
        lo, hi = got[f"min({timestamp})"], got[f"max({timestamp})"]
    else:
        lo, hi = (ts.min(), ts.max()) if len(ts) else (None, None)
    return [None if v is None else pd.Timestamp(v).isoformat() for v in (lo, hi)]


def _check_chunks(drift, n_valid: int) -> None:
    """reference: chunks learns the prediction's threshold from the validation split: refuse before the search
    what would fail after it."""
    if drift.predictions and n_valid < 3 * drift.window:
        raise DataError(
            f"monitoring.drift.reference: chunks needs at least 3 windows ({3 * drift.window} rows) of "
            f"validation rows for the prediction's threshold; the split has {n_valid}: lower "
            "monitoring.drift.window, or set monitoring.drift.predictions: false"
        )


def _reference(train_raw, inputs: list[str], timestamp: str | None, n_train: int, drift, seed: int) -> pd.DataFrame:
    """The drift reference: a uniform sample of the training split (not its first rows: data is often
    time-ordered); with ``reference: chunks``, its latest rows in time order (by the source's timestamp when
    it has one, else in the source's order)."""
    size = drift.reference_rows() if drift else 2000
    if drift is not None and drift.reference == "chunks":
        ds = train_raw.select_columns([*inputs, *([timestamp] if timestamp else [])])
        if timestamp:
            ds = ds.sort(timestamp)
        if n_train > size:
            ds = ds.split_at_indices([n_train - size])[1]
        return ds.to_pandas()[inputs].reset_index(drop=True)
    reference = train_raw.select_columns(inputs).random_sample(min(1.0, 1.5 * size / n_train), seed=seed)
    return reference.to_pandas().sample(frac=1, random_state=seed).head(size).reset_index(drop=True)


def search(
    cfg: PipelineConfig,
    prep_store: Storage,
    prep: dict,
    tune_target: tuple,
    out: Path,
    say: Callable[[str], None],
    progress: bool = True,
    resume: bool = False,
) -> dict:
    """The train step: a Tune search over the prepared splits; writes the best model and the search record
    (every trial with its params, metrics and history) to ``out``. ``tune_target``: (path, filesystem) of
    Tune's experiment state, which every node writes."""
    t = cfg.training
    classes = prep["classes"]
    spec = TrainSpec(
        task=t.task,
        label=LABEL,
        feature_columns=prep["feature_columns"],
        n_classes=len(classes) if classes else None,
        model=t.model.model_copy(update={"params": {}}),
        metric=t.tune.metric,
        mode=t.tune.mode,
        seed=t.tune.seed,
        max_failures=t.failure.max_failures,
    )
    say(
        f"searching {t.model.type}: num_samples={t.tune.num_samples}, metric {t.tune.metric} ({t.tune.mode}), "
        f"search {t.tune.search}, scheduler {t.tune.scheduler}" + (" (resuming)" if resume else "")
    )
    with _row_order_kept():
        train_ds = read_prepared(prep_store, "train").materialize()
        if t.model.params.get("scale_pos_weight") == "auto":
            positive = float(train_ds.mean(LABEL))
            spec.scale_pos_weight = (1 - positive) / max(positive, 1e-12)
        result = run_search(
            spec,
            t.tune,
            t.model.params,
            train_ds,
            read_prepared(prep_store, "valid").materialize(),
            tune_target[0],
            progress=progress,
            resume=resume,
            storage_fs=tune_target[1],
        )
    best = ", ".join(f"{k}={v:.4f}" for k, v in result.best_metrics.items())
    say(f"best trial: {best}")
    model_file = layout.XGB_MODEL if t.model.type == "xgboost" else layout.SKLEARN_MODEL
    result.copy_model(out / model_file)
    record = {
        "metric": t.tune.metric,
        "mode": t.tune.mode,
        "best": result.best_metrics,
        "best_params": result.best_params,
        "trials": result.trials,
        "spec": {
            **{k: v for k, v in asdict(spec).items() if k not in ("feature_columns", "storage_dir", "storage_fs")},
            "model": spec.model.model_dump(mode="json", exclude={"params"}),  # as before the model was typed
        },
    }
    if t.task == "binary":
        record["decision"] = _decision(t, spec, result.best_params, train_ds, out / model_file, say)
    layout.write_json(out / "search.json", record)
    from raymlops.pipeline.fingerprint import file_sha256

    return {
        "model_file": model_file,
        "best": result.best_metrics,
        "model_sha256": file_sha256(out / model_file),
        **({"threshold": record["decision"]["threshold"]} if "decision" in record else {}),
    }


def _decision(t, spec: TrainSpec, params: dict, train_ds, model_path: Path, say: Callable[[str], None]) -> dict:
    """The binary decision threshold (training.decision): 0.5 or the configured value, or chosen on out-of-fold
    scores of the training split, fitted in a Ray task (the split is read there, not on the driver)."""
    d = t.decision
    if d is None or d.threshold != "auto":
        return {"threshold": 0.5 if d is None else float(d.threshold), "how": "default" if d is None else "configured"}
    import ray

    rounds = None
    if t.model.type == "xgboost":
        import xgboost

        rounds = xgboost.Booster(model_file=str(model_path)).num_boosted_rounds()  # early stopping's best
    cpus = t.model.cpus_per_trial
    y, scores, folds = ray.get(
        ray.remote(num_cpus=cpus)(decision.out_of_fold).remote(train_ds, spec, params, rounds, d.folds, t.tune.seed)
    )
    if scores is None:
        say("decision threshold kept at 0.5: the training split has fewer than 2 rows of one class")
        return {"threshold": 0.5, "how": "kept at 0.5: fewer than 2 training rows of one class"}
    chosen = decision.choose(y, scores, d.optimize, d.min_recall, d.cost.model_dump())
    say(
        f"decision threshold {chosen['threshold']:.4f} ({d.optimize} on {folds}-fold out-of-fold scores of the "
        f"training split: f1 {chosen.get('f1', float('nan')):.4f}, precision {chosen.get('precision', float('nan')):.4f}, "
        f"recall {chosen.get('recall', float('nan')):.4f})"
    )
    return {**chosen, "how": f"chosen on {folds}-fold out-of-fold scores of the training split"}


def write_run(cfg: PipelineConfig, writer: layout.RunWriter, prep_out, train_dir: Path, extra_meta: dict) -> dict:
    """Assembles the run directory from the step outputs (``prep_out``: the prepare step's StepOutput);
    returns the metrics document."""
    t, prep, prep_dir = cfg.training, prep_out.info, prep_out.path
    record = json.loads((train_dir / "search.json").read_text())
    model_file = layout.XGB_MODEL if t.model.type == "xgboost" else layout.SKLEARN_MODEL
    for name in (layout.PREPROCESSING, layout.SCHEMA, layout.REFERENCE, layout.QUALITY):
        layout.link_or_copy(prep_dir / name, writer.path(name))
    for folder in (layout.DRIFT_DIR, layout.EXPLORE_DIR):
        if (prep_dir / folder).is_dir():
            shutil.copytree(prep_dir / folder, writer.path(folder), copy_function=layout.link_or_copy)
    layout.link_or_copy(train_dir / model_file, writer.path(model_file))
    metrics = {k: record[k] for k in ("metric", "mode", "best", "best_params")}
    metrics["trials"] = [{k: v for k, v in tr.items() if k != "history"} for tr in record["trials"]]
    writer.json(layout.METRICS, metrics)
    import ray
    import sklearn
    import xgboost

    writer.json(
        layout.META,
        {
            "run_id": writer.run_id,
            "pipeline": cfg.name,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "task": t.task,
            "label": t.label,
            "classes": prep["classes"],
            "model_type": t.model.type,
            "model_file": model_file,
            "feature_columns": prep["feature_columns"],
            "input_columns": prep["input_columns"],
            "rows": prep["rows"],
            "time_range": prep.get("time_range") or [],
            **prep["origin"],
            "versions": {
                "python": platform.python_version(),
                "ray": ray.__version__,
                "xgboost": xgboost.__version__,
                "scikit-learn": sklearn.__version__,
            },
            "spec": record["spec"],
            **({"decision": record["decision"]} if "decision" in record else {}),
            **extra_meta,
            "explored": writer.path(layout.EXPLORE_DIR).is_dir(),  # training.explore wrote a profile (console: Data)
        },
    )
    drift = cfg.monitoring.drift if cfg.monitoring else None
    if drift and drift.predictions and writer.path(layout.DRIFT_DIR).is_dir():
        _fit_prediction_drift(writer, drift, prep_out.store)
    # Nulls kept: an explicit null (e.g. tune.seed) must not come back as the default in `reproduce`.
    writer.path(layout.CONFIG).write_text(yaml.safe_dump(json.loads(cfg.model_dump_json()), sort_keys=False))
    return metrics


def _fit_prediction_drift(writer: layout.RunWriter, drift: DriftConfig, prep: Storage) -> None:
    """Fits the prediction-drift detector on the model's outputs over a sample of the validation split (rows
    the model never trained on: its outputs on training rows are more confident than on any new data):
    P(positive) for binary, the class for multiclass, the value for regression."""
    from raymlops.artifacts.predictor import Predictor

    predictor = Predictor(writer.dir)
    valid = prep.read_parquet("valid_raw")
    size = drift.reference_rows()
    chunks = drift.reference == "chunks"  # in the source's order, as the inputs' reference
    reference = valid.head(size) if chunks else valid.sample(n=min(len(valid), size), random_state=0)
    preds, proba = predictor.predict_with_proba(reference)
    outputs = pd.Series(proba if predictor.task == "binary" else preds)
    fit_prediction(outputs, drift.model_dump(), writer.path(layout.DRIFT_DIR))
