"""Batch scoring on Ray Data: a pool of actors, each holding the run's Predictor.

Everything that can be wrong with the input (no files, missing columns, wrong types, output names that
would overwrite input columns) is found from the files' schemas before any Ray work, and reported as one
``DataError`` naming the path and the columns.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from raymlops.artifacts import Predictor
from raymlops.artifacts import run as layout
from raymlops.data.reader import Input, read_dataset, resolve, schema
from raymlops.data.schema import InputSchema, arrow_problems
from raymlops.errors import DataError

OUTPUTS = ("prediction", "probability", "model_version")


@dataclass
class Plan:
    """A checked scoring job: the run, the input files and the output column names."""

    run_dir: str
    input: Input
    names: dict[str, str]  # output -> column name ("probability" also prefixes the per-class columns)
    text_columns: list[str]


_PREDICTORS: dict[str, Predictor] = {}  # per worker process: the model loads once, not once per batch


def _score_batch(batch: pd.DataFrame, run_dir: str, names: dict[str, str]) -> pd.DataFrame:
    # Tasks, not an actor pool: Ray Data's pool actors log a spurious error line per job (ray#57733), and
    # Ray reuses worker processes, so the cache above loads the model once per process anyway.
    predictor = _PREDICTORS.get(run_dir) or _PREDICTORS.setdefault(run_dir, Predictor(run_dir))
    preds, probs = predictor.predict_with_proba(batch)
    out = batch.copy()
    out[names["prediction"]] = preds
    columns = _probability_names(predictor.task, predictor.classes, names["probability"])
    if columns:
        p = np.asarray(probs, dtype=np.float64).reshape(len(batch), -1)
        for i, name in enumerate(columns):
            out[name] = p[:, i]
    out[names["model_version"]] = predictor.version
    return out


def _probability_names(task: str, classes, name: str) -> list[str]:
    """The probability columns scoring adds: one for binary, one per class for multiclass, none for
    regression (what ``plan`` checks for clashes and ``_score_batch`` writes)."""
    if task == "binary":
        return [name]
    if task == "multiclass":
        return [f"{name}_{c}" for c in classes]
    return []


def output_names(spec: list[str] | None, prefix: str | None) -> dict[str, str]:
    """``--output-columns prediction=NAME ...`` and ``--output-prefix P`` as {output: column name}."""
    names = {o: f"{prefix or ''}{o}" for o in OUTPUTS}
    for item in spec or []:
        for pair in item.split(","):
            key, sep, value = pair.partition("=")
            if not sep or key.strip() not in OUTPUTS or not value.strip():
                raise DataError(
                    f"--output-columns: got {pair!r}; expected OUTPUT=NAME with OUTPUT one of {', '.join(OUTPUTS)}"
                )
            names[key.strip()] = value.strip()
    if len(set(names.values())) < len(names):
        raise DataError(f"--output-columns: two outputs share a name: {names}")
    return names


def plan(
    run: str | None,
    input_path: str,
    storage: str | None = None,
    fmt: str | None = None,
    names: dict[str, str] | None = None,
    pipeline: str | None = None,
) -> Plan:
    """Checks a scoring job before any Ray work: the run exists, the input has every model column with a
    fitting type, and no output column would overwrite an input column.

    Raises:
        DataError: ``PATH: column: problem`` for each problem, in one message.
    """
    run_dir = str(layout.find_run(run, storage) if run else layout.latest_run(storage, pipeline))
    local = layout.local_run(run_dir)
    model_schema = InputSchema.from_dict(json.loads((local / layout.SCHEMA).read_text()))
    meta = json.loads((local / layout.META).read_text())
    text = [c.name for c in model_schema.columns if c.type == "string"]
    src = resolve(input_path, fmt)
    arrow = schema(src, text)
    problems = [f"{c}: {p}" for c, p in arrow_problems(arrow, model_schema).items()]
    names = names or output_names(None, None)
    produced = [
        names["prediction"],
        names["model_version"],
        *_probability_names(meta["task"], meta.get("classes"), names["probability"]),
    ]
    clash = [c for c in produced if c in arrow.names]
    problems += [
        f"{c}: the input already has this column and scoring would overwrite it; name the outputs with "
        f"--output-columns {_output_of(c, names)}=NEW_NAME or --output-prefix PREFIX"
        for c in clash
    ]
    if problems:
        raise DataError(f"{input_path}: " + f"; {input_path}: ".join(problems))
    return Plan(run_dir, src, names, text)


def _output_of(column: str, names: dict[str, str]) -> str:
    return next((o for o, n in names.items() if column == n or column.startswith(f"{n}_")), "prediction")


def score(p: Plan, output_path: str, actors: int = 1, batch_size: int = 4096) -> int:
    """Scores a checked plan and writes Parquet to ``output_path`` atomically (a hidden folder renamed into
    place; removed if anything fails, Ctrl-C included). Returns the number of rows written."""
    import ray.data

    if "://" in output_path:
        raise DataError(
            f"--output {output_path!r}: scoring writes to a local or shared path; URIs are not supported yet"
        )
    out = Path(output_path).resolve()
    tmp = out.with_name(f".{out.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        ds = read_dataset(p.input, text_columns=p.text_columns)
        scored = ds.map_batches(
            _score_batch,
            fn_kwargs={"run_dir": p.run_dir, "names": p.names},
            batch_format="pandas",
            batch_size=batch_size,
            compute=ray.data.TaskPoolStrategy(size=actors),
        )
        scored.write_parquet(str(tmp))
        if not tmp.is_dir():
            raise DataError(f"{p.input.path}: no rows to score")
        rows = ray.data.read_parquet(str(tmp)).count()
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return rows
