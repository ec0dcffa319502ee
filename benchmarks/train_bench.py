"""The XGBoost search on the in-process path vs today's Ray Train path vs plain xgboost.train, in the same run.

Two tables, one Ray session (`ensure_ray`, all CPUs), every figure beside its baseline from this run:

1. The quickstart data: the demo generator's `train.parquet` (20,000 rows, seed 7) through the pipeline's own
   prepare step (`configs/quickstart.yaml`: time split, impute, one-hot, scale), the quickstart's search
   space, 60 rounds with early stopping after 10. Each search calls `raymlops.training.run_search` as the
   train step does (random search, seed 7, FIFO, default concurrency) and is timed from the call to its
   return (Tune start-up, the splits put in the object store, every trial, checkpoints):
   - in-process: `distributed: auto` (each trial boosts in its own process, one CPU; here 2 at a time);
   - data-parallel: `distributed: always` (today's path: each trial drives a Ray Train run of one worker);
   - baseline: the same sampled configs fitted with plain `xgboost.train` one after another in this process,
     nthread=1 (a trial's one CPU) and nthread=2, with the same params and early stopping; only the fits are
     timed (each DMatrix is built once, before them, and its build time printed apart).
   Before them, a 1-trial, 1-round in-process search is timed twice (cold, warm): the fixed start-up.
   The quickstart as configured (3 trials) is timed on both paths too. Then, on the same data and seed:
   - ASHA vs FIFO: the same random search with `scheduler: asha` (the same sampled configs): the boosting
     rounds the trials ran (a trial's last reported round, or its whole validation curve when it finished),
     the trials' summed seconds, wall time and the best AUC;
   - Optuna (seeded TPE) vs random on the quickstart's space and on a wider 5-parameter space, same trial
     count: best, median and worst trial AUC of each (selected and reported on the same validation split).
2. A synthetic table (numpy, seeded): 1,000,000 training and 100,000 validation rows, 20 float features, a
   binary label from a linear + interaction logit. The quickstart's space, a fixed number of rounds and no
   early stopping (every trial does the same work): throughput in boosting rounds per second of wall time,
   2 concurrent in-process trials (`max_concurrent_trials: 2`) vs the same configs as plain fits one after
   another (nthread=1, and nthread=2); the data-parallel path on the first 8 of those configs (each of its
   trials costs a Train run's start-up; all 20 would add some 5 minutes).

Goals (issue 18): the 20-trial in-process search within 1.5x the sequential plain fits (nthread=1) + 5 s;
data-parallel / in-process >= 5x with the same or better best AUC; 2 concurrent trials on the 1M-row table
>= 1.6x the sequential throughput. About 14 minutes on 2 cores by default (estimated; about half of it is
the data-parallel searches); `--quick` (4 trials on 5,000 demo rows, 2 trials on 100,000 synthetic rows) is a
3-4 minute smoke run whose figures mean little.

    .venv/bin/python benchmarks/train_bench.py [--trials 20] [--rows 20000] [--big-rows 1000000]
        [--big-trials 20] [--big-rounds 50] [--big-dp-trials 8] [--seed 7] [--skip-big] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
# A wider space for Optuna vs random: more dimensions and ranges where bad values cost something.
WIDE = {
    "max_depth": {"randint": [2, 10]},
    "eta": {"loguniform": [0.01, 0.5]},
    "min_child_weight": {"loguniform": [0.5, 20.0]},
    "subsample": {"uniform": [0.5, 1.0]},
    "colsample_bytree": {"uniform": [0.5, 1.0]},
}
STARTUP = 10  # optuna.samplers.TPESampler's default n_startup_trials (raymlops leaves it as is)


@dataclass
class Table:
    """Both splits as Ray Datasets (what run_search gets) and as arrays (what the plain fits get)."""

    name: str
    train_ds: object
    valid_ds: object
    features: list[str]
    x: np.ndarray = field(init=False)
    y: np.ndarray = field(init=False)
    xv: np.ndarray = field(init=False)
    yv: np.ndarray = field(init=False)

    def __post_init__(self):
        from raymlops.pipeline.train import LABEL

        for split, (xa, ya) in (("train", ("x", "y")), ("valid", ("xv", "yv"))):
            df = getattr(self, f"{split}_ds").to_pandas()
            setattr(self, xa, df[self.features].to_numpy(dtype=np.float32, na_value=np.nan))
            setattr(self, ya, df[LABEL].to_numpy())

    def describe(self) -> str:
        return f"{len(self.y):,} training rows, {len(self.yv):,} validation rows, {len(self.features)} features"


@dataclass
class Search:
    wall: float
    path: str
    configs: list[dict]
    aucs: list[float]  # finished trials
    trial_aucs: list[float | None]  # per trial, in the order the searcher created them (None: not finished)
    rounds: int  # boosting rounds the trials ran, summed
    trial_s: float  # the trials' own running time, summed
    statuses: list[str]

    @property
    def best(self) -> float:
        return max(self.aucs)


def rounds_run(history: dict) -> int:
    """The last boosting round a trial reached: its full validation curve when it finished, else the round of
    its last intermediate report."""
    return max((pts[-1][0] for pts in history.values() if pts), default=0)


def search(
    table: Table,
    storage: Path,
    name: str,
    *,
    trials: int,
    seed: int,
    rounds: int,
    early_stopping: int | None,
    params: dict,
    distributed: str = "auto",
    kind: str = "random",
    scheduler: str = "fifo",
    concurrent: int | None = None,
) -> Search:
    """One run_search call as the pipeline's train step makes it, timed."""
    from raymlops.config.models import TuneConfig, XGBoostModel
    from raymlops.pipeline.train import LABEL, _row_order_kept
    from raymlops.training import TrainSpec, run_search

    model = XGBoostModel.model_validate(
        {
            "type": "xgboost",
            "distributed": distributed,
            "num_boost_round": rounds,
            "early_stopping_rounds": early_stopping,
            "params": params,
        }
    )
    spec = TrainSpec(
        task="binary",
        label=LABEL,
        feature_columns=table.features,
        n_classes=2,
        model=model.model_dump(exclude={"params"}),
        metric="auc",
        mode="max",
        seed=seed,
    )
    tune_cfg = TuneConfig(
        num_samples=trials,
        metric="auc",
        mode="max",
        search=kind,
        scheduler=scheduler,
        max_concurrent_trials=concurrent,
        seed=seed,
    )
    t = time.perf_counter()
    with _row_order_kept():
        result = run_search(
            spec, tune_cfg, model.params, table.train_ds, table.valid_ds, str(storage / name), progress=False
        )
    wall = time.perf_counter() - t
    ok = [tr for tr in result.trials if tr["status"] == "ok"]
    return Search(
        wall=wall,
        path=spec.path,
        configs=[tr["params"] for tr in result.trials],
        aucs=[tr["metrics"]["auc"] for tr in ok],
        trial_aucs=[tr["metrics"]["auc"] if tr["status"] == "ok" else None for tr in result.trials],
        rounds=sum(rounds_run(tr["history"]) for tr in result.trials),
        trial_s=sum(tr.get("seconds", 0.0) for tr in result.trials),
        statuses=[tr["status"] for tr in result.trials],
    )


@dataclass
class Plain:
    fits_s: float
    dmatrix_s: float
    aucs: list[float]
    rounds: int

    @property
    def best(self) -> float:
        return max(self.aucs)


def plain_fits(
    table: Table, configs: list[dict], *, seed: int, rounds: int, early_stopping: int | None, nthread: int
) -> Plain:
    """The baseline: the same configs with plain xgboost.train one after another in this process, with the
    params a trial uses (raymlops.training.xgb.xgb_params) and the same early stopping; only the fits timed."""
    import xgboost
    from sklearn.metrics import roc_auc_score

    t = time.perf_counter()
    dtrain = xgboost.DMatrix(table.x, label=table.y, feature_names=table.features, nthread=nthread)
    dvalid = xgboost.DMatrix(table.xv, label=table.yv, feature_names=table.features, nthread=nthread)
    dmatrix_s = time.perf_counter() - t
    took, aucs, total = 0.0, [], 0
    for config in configs:
        params = {
            "objective": "binary:logistic",
            "tree_method": "hist",
            "seed": seed,
            "nthread": nthread,
            **config,
            "eval_metric": "auc",
        }
        callbacks = (
            [
                xgboost.callback.EarlyStopping(
                    rounds=early_stopping, metric_name="auc", data_name="valid", maximize=True, save_best=True
                )
            ]
            if early_stopping
            else []
        )
        history: dict = {}
        t = time.perf_counter()
        booster = xgboost.train(
            params,
            dtrain,
            num_boost_round=rounds,
            evals=[(dvalid, "valid")],
            callbacks=callbacks,
            verbose_eval=False,
            evals_result=history,
        )
        took += time.perf_counter() - t
        total += len(history["valid"]["auc"])
        aucs.append(float(roc_auc_score(table.yv, booster.predict(dvalid))))
    return Plain(took, dmatrix_s, aucs, total)


def quickstart_table(tmp: Path, rows: int, seed: int):
    """The demo data through the pipeline's own prepare step; returns (table, quickstart config)."""
    from raymlops import Pipeline
    from raymlops.data.demo import write_demo_data
    from raymlops.pipeline.steps import step_cache
    from raymlops.pipeline.train import prepare, read_prepared

    demo = tmp / "demo"
    write_demo_data(demo, rows=rows, seed=seed)
    cfg = Pipeline.from_yaml(
        ROOT / "configs" / "quickstart.yaml",
        [
            f"storage={tmp / 'store'}",
            f"sources.customers.path={demo}/train.parquet",
            "monitoring=null",
            "serving=null",
            "registry.enabled=false",
            f"training.tune.seed={seed}",
        ],
        say=None,
    ).config
    prep = step_cache(cfg, no_cache=True).run(
        "prepare", {"bench": "train_bench"}, lambda d: prepare(cfg, d, lambda _m: None)
    )
    table = Table(
        "quickstart",
        read_prepared(prep.store, "train").materialize(),
        read_prepared(prep.store, "valid").materialize(),
        prep.info["feature_columns"],
    )
    return table, cfg


def synthetic_table(rows: int, seed: int) -> Table:
    """``rows`` training and ``rows // 10`` validation rows: 20 standard normal float32 features and a binary
    label drawn from a logit with 10 linear terms, an interaction and two non-linear terms."""
    import pandas as pd
    import ray.data

    from raymlops.pipeline.train import LABEL

    rng = np.random.default_rng(seed)
    n = rows + rows // 10
    x = rng.standard_normal((n, 20), dtype=np.float32)
    w = rng.normal(0, 0.5, 10)
    logit = x[:, :10] @ w + 0.8 * x[:, 0] * x[:, 1] - 0.6 * np.abs(x[:, 2]) + 0.5 * np.sin(2 * x[:, 3])
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    features = [f"f{i:02d}" for i in range(20)]
    df = pd.DataFrame(x, columns=features)
    df[LABEL] = y
    return Table(
        "synthetic",
        ray.data.from_pandas(df.iloc[:rows].reset_index(drop=True)).materialize(),
        ray.data.from_pandas(df.iloc[rows:].reset_index(drop=True)).materialize(),
        features,
    )


def spread(aucs: list[float]) -> str:
    return f"best {max(aucs):.4f}, median {statistics.median(aucs):.4f}, worst {min(aucs):.4f}"


def line(label: str, s: Search) -> None:
    bad = [st for st in s.statuses if st != "ok"]
    print(
        f"  {label:<44} {s.wall:7.1f} s  auc {spread(s.aucs)}  rounds {s.rounds:,}  trial-s {s.trial_s:.1f}"
        + (f"  ({len(bad)} not finished: {', '.join(sorted(set(bad)))})" if bad else ""),
        flush=True,
    )


def plain_line(label: str, p: Plain) -> None:
    print(
        f"  {label:<44} {p.fits_s:7.1f} s  auc {spread(p.aucs)}  rounds {p.rounds:,}  "
        f"(DMatrix build {p.dmatrix_s:.2f} s, not counted)",
        flush=True,
    )


def pct(x: float) -> str:
    return f"{round(x * 100)}%"


def met(ok: bool) -> str:
    return "met" if ok else "MISSED"


def same_configs(a: list[dict], b: list[dict]) -> bool:
    def key(c):
        return sorted((k, round(v, 12) if isinstance(v, float) else v) for k, v in c.items())

    return sorted(map(key, a)) == sorted(map(key, b))


def bench_quickstart(args, tmp: Path) -> None:
    t = time.perf_counter()
    table, cfg = quickstart_table(tmp, args.rows, args.seed)
    m = cfg.training.model
    space, rounds, es = m.params, m.num_boost_round, m.early_stopping_rounds
    print(
        f"\n## quickstart data ({args.rows:,} demo rows, seed {args.seed}; prepare step "
        f"{time.perf_counter() - t:.1f} s): {table.describe()}",
        flush=True,
    )
    print(f"   {rounds} rounds, early stopping {es}, space {', '.join(f'{k} {v.kind}' for k, v in space.items())}")
    common = dict(seed=args.seed, rounds=rounds, early_stopping=es)
    store = tmp / "tune"

    cold = search(table, store, "startup-cold", trials=1, seed=args.seed, rounds=1, early_stopping=None, params=space)
    warm = search(table, store, "startup-warm", trials=1, seed=args.seed, rounds=1, early_stopping=None, params=space)
    print(
        f"  fixed start-up (in-process search of 1 trial, 1 round): cold {cold.wall:.1f} s, warm {warm.wall:.1f} s",
        flush=True,
    )

    n = args.trials
    print(
        f"\n  {n} trials, random search, FIFO (wall s; auc over finished trials; boosting rounds run; summed trial s):"
    )
    inproc = search(table, store, "inproc", trials=n, params=space, **common)
    line(f"in-process (auto -> {inproc.path})", inproc)
    dp = search(table, store, "dp", trials=n, params=space, distributed="always", **common)
    line(f"data-parallel (always -> {dp.path}; today)", dp)
    plain1 = plain_fits(table, inproc.configs, nthread=1, **common)
    plain_line(f"baseline: {n} plain xgboost.train, nthread=1", plain1)
    plain2 = plain_fits(table, inproc.configs, nthread=2, **common)
    plain_line(f"          {n} plain xgboost.train, nthread=2", plain2)

    configured = cfg.training.tune.num_samples
    print(f"\n  the quickstart as configured ({configured} trials):")
    c_in = search(table, store, "configured-inproc", trials=configured, params=space, **common)
    line(f"in-process (auto -> {c_in.path})", c_in)
    c_dp = search(table, store, "configured-dp", trials=configured, params=space, distributed="always", **common)
    line("data-parallel (always; today)", c_dp)

    print("\n  scheduler, same random search:")
    asha = search(table, store, "asha", trials=n, params=space, scheduler="asha", **common)
    line("in-process, FIFO (the run above)", inproc)
    line("in-process, ASHA", asha)

    print("\n  search algorithm, same trial count and seed (in-process):")
    optuna = search(table, store, "optuna", trials=n, params=space, kind="optuna", **common)
    line("quickstart space: random (the run above)", inproc)
    line("quickstart space: optuna (TPE)", optuna)
    wide_r = search(table, store, "wide-random", trials=n, params=WIDE, **common)
    line("wide space: random", wide_r)
    wide_o = search(table, store, "wide-optuna", trials=n, params=WIDE, kind="optuna", **common)
    line("wide space: optuna (TPE)", wide_o)

    limit = 1.5 * plain1.fits_s + 5
    print(f"\n  ratios (quickstart, {n} trials, same run):")
    print(
        f"    in-process / plain nthread=1: x{inproc.wall / plain1.fits_s:.2f} "
        f"({inproc.wall:.1f} s vs {plain1.fits_s:.1f} s; minus warm start-up: "
        f"x{max(0.0, inproc.wall - warm.wall) / plain1.fits_s:.2f}); "
        f"goal <= 1.5 x plain + 5 s = {limit:.1f} s: {met(inproc.wall <= limit)}"
    )
    print(f"    in-process / plain nthread=2: x{inproc.wall / plain2.fits_s:.2f}")
    print(
        f"    data-parallel / in-process (speed-up over today): x{dp.wall / inproc.wall:.2f}; goal >= 5x: "
        f"{met(dp.wall / inproc.wall >= 5)}; best auc {inproc.best:.4f} vs {dp.best:.4f} today: "
        f"{'same or better' if inproc.best >= dp.best - 1e-9 else 'WORSE'} "
        f"(plain fits' best {plain1.best:.4f})"
    )
    print(
        f"    as configured ({configured} trials): data-parallel / in-process x{c_dp.wall / c_in.wall:.2f} "
        f"({c_dp.wall:.1f} s vs {c_in.wall:.1f} s); best auc {c_in.best:.4f} vs {c_dp.best:.4f}"
    )
    print(
        f"    ASHA vs FIFO: same configs: {'yes' if same_configs(asha.configs, inproc.configs) else 'NO'}; "
        f"compute saved {pct(1 - asha.rounds / inproc.rounds)} of boosting rounds ({asha.rounds:,} vs "
        f"{inproc.rounds:,}), {pct(1 - asha.trial_s / inproc.trial_s)} of trial seconds, "
        f"wall x{asha.wall / inproc.wall:.2f}; "
        f"metric lost {inproc.best - asha.best:+.4f} auc ({asha.best:.4f} vs {inproc.best:.4f})"
    )
    for label, r, o in (("quickstart space", inproc, optuna), ("wide space", wide_r, wide_o)):
        print(
            f"    optuna vs random, {label}: best auc {o.best:.4f} vs {r.best:.4f} ({o.best - r.best:+.4f}: "
            f"{'optuna better' if o.best > r.best else 'random better' if r.best > o.best else 'tie'}); "
            f"median {statistics.median(o.aucs):.4f} vs {statistics.median(r.aucs):.4f}; "
            f"best-worst spread of random {r.best - min(r.aucs):.4f}"
        )
    print(
        f"    (Optuna's TPE suggests its first {STARTUP} trials at random (n_startup_trials), so "
        f"{max(0, n - STARTUP)} of these {n} were guided by earlier results; with several trials at a time, "
        "which results it has seen when it suggests varies between runs. One seed: a difference within the "
        "random search's spread is noise.)"
    )
    print(
        f"    per trial: in-process {inproc.trial_s / n:.2f} s of trial time (mean) vs a plain nthread=1 fit "
        f"{plain1.fits_s / n:.2f} s; wall per trial {inproc.wall / n:.2f} s in-process, {dp.wall / n:.2f} s "
        "data-parallel"
    )


def bench_big(args, tmp: Path) -> None:
    from raymlops.config.models import XGBoostModel

    t = time.perf_counter()
    table = synthetic_table(args.big_rows, args.seed)
    space = XGBoostModel.model_validate(
        {
            "type": "xgboost",
            "params": {
                "max_depth": {"randint": [3, 6]},
                "eta": {"loguniform": [0.03, 0.3]},
                "subsample": {"uniform": [0.7, 1.0]},
            },
        }
    ).params
    n, rounds = args.big_trials, args.big_rounds
    print(
        f"\n## synthetic table (generated in {time.perf_counter() - t:.1f} s): {table.describe()}; {n} trials x "
        f"{rounds} rounds, no early stopping, quickstart space",
        flush=True,
    )
    common = dict(seed=args.seed, rounds=rounds, early_stopping=None, params=space)
    store = tmp / "tune-big"
    inproc = search(table, store, "inproc", trials=n, concurrent=2, **common)
    line(f"in-process (auto -> {inproc.path}), 2 at a time", inproc)
    k = min(n, args.big_dp_trials)
    dp = search(table, store, "dp", trials=k, distributed="always", **common) if k else None
    if dp:
        line(f"data-parallel (always; today), {k} trial{'s' if k > 1 else ''}", dp)
    plain1 = plain_fits(table, inproc.configs, seed=args.seed, rounds=rounds, early_stopping=None, nthread=1)
    plain_line(f"baseline: {n} plain xgboost.train, nthread=1", plain1)
    plain2 = plain_fits(table, inproc.configs, seed=args.seed, rounds=rounds, early_stopping=None, nthread=2)
    plain_line(f"          {n} plain xgboost.train, nthread=2", plain2)

    base = plain1.rounds / plain1.fits_s
    rps2, rps_in = plain2.rounds / plain2.fits_s, inproc.rounds / inproc.wall
    print(
        f"\n  throughput (boosting rounds / s, same run): plain nthread=1 sequential {base:.2f} (baseline), "
        f"plain nthread=2 sequential {rps2:.2f}, in-process 2 at a time {rps_in:.2f}"
        + (f", data-parallel {dp.rounds / dp.wall:.2f}" if dp else "")
    )
    print(
        f"    2 concurrent in-process trials / sequential plain nthread=1: x{rps_in / base:.2f}; goal >= 1.6x: "
        f"{met(rps_in / base >= 1.6)}"
    )
    print(f"    2 concurrent in-process trials / sequential plain nthread=2: x{rps_in / rps2:.2f}")
    print(
        f"    per trial: in-process {inproc.trial_s / n:.1f} s (its own DMatrix, 2 trials sharing 2 cores) vs plain "
        f"nthread=1 fit {plain1.fits_s / n:.1f} s (one shared DMatrix)"
    )
    if dp:
        same = same_configs(dp.configs, inproc.configs[:k])
        first = max(a for a in inproc.trial_aucs[:k] if a is not None)
        print(
            f"    data-parallel / in-process throughput: x{dp.rounds / dp.wall / rps_in:.2f}; the first {k} configs "
            f"{'are the same' if same else 'DIFFER'}: best auc data-parallel {dp.best:.4f}, in-process {first:.4f}"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=20, help="trials per search on the quickstart data")
    p.add_argument("--rows", type=int, default=20_000, help="demo rows (the quickstart's 20,000)")
    p.add_argument("--big-rows", type=int, default=1_000_000, help="training rows of the synthetic table")
    p.add_argument("--big-trials", type=int, default=20)
    p.add_argument("--big-rounds", type=int, default=50)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--skip-big", action="store_true", help="the quickstart data only")
    p.add_argument(
        "--big-dp-trials",
        type=int,
        default=8,
        help="trials of the data-parallel search on the synthetic table (the first of the same sampled "
        "configs; 0: none)",
    )
    p.add_argument(
        "--quick", action="store_true", help="a smoke run: 4 trials on 5,000 demo rows, 2 on 100,000 synthetic rows"
    )
    args = p.parse_args()
    if args.quick:
        args.trials, args.rows, args.big_rows, args.big_trials, args.big_rounds, args.big_dp_trials = (
            4,
            5_000,
            100_000,
            2,
            20,
            1,
        )

    import os

    import ray

    from raymlops.config.models import RayConfig
    from raymlops.data.ray_env import ensure_ray

    ensure_ray(RayConfig())
    cpus = int(ray.cluster_resources().get("CPU", 0))
    print(f"Ray {ray.__version__}, {cpus} CPUs ({os.cpu_count()} on this machine)", flush=True)
    started = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="train-bench-") as tmp:
            bench_quickstart(args, Path(tmp))
            if not args.skip_big:
                bench_big(args, Path(tmp))
    finally:
        ray.shutdown()
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
