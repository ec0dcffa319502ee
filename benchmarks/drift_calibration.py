"""Drift detectors' calibration, measured: false-alarm rates on unshifted data against their targets, and
detection power on graded shifts, every detector in the same run.

Method
- Data: the demo telecom-churn rows (write_demo_data; the quickstart's ten inputs). Seed 7's training file fits
  everything: a small model (one-hot + logistic regression, standing in for the quickstart's XGBoost) on 75%
  of it; the input reference is a uniform sample of that 75% (DriftConfig's reference size); the prediction
  reference is the model's P(churn) on the other 25% (training does the same with its validation split).
  Test rows come from seeds 8, 9, ... (their train and holdout files, same distribution): never used to fit
  anything. Their file order is by a timestamp drawn independently of the other columns: a random order.
- Each detector is DriftConfig(detector=kind) with its defaults (p_val 0.05, bonferroni, ert 1000,
  online_window 50) and predictions on, fitted with fit_inputs + fit_prediction and tested with
  DriftTester.test: the product's path. One reference per detector: rates are conditional on it, as in one
  deployment. numpy's global generator is seeded before each fit (alibi-detect's online calibration draws
  from it), so a run is repeatable.
- False alarms, batch (ks, chi2, tabular): N disjoint unshifted windows of `window` (500) rows, the same for
  the three. Target: p_val, the family-wise rate of the window's verdict over every tested feature and the
  prediction. The rate's 95% interval is Clopper-Pearson's; "above" means the target lies above the interval
  (fewer false alarms than promised), "BELOW" that the detector alarms more often than its target.
- False alarms, online (cvm_online, fet_online): one unshifted stream of N windows of 200 rows fed in order (the
  detectors keep their state and restart after each alarm; 200, not 500, rows: rows go through alibi-detect
  one at a time). Target: `ert` rows between alarms of the overall verdict (inputs or prediction: each is
  calibrated to 2 x ert). Measured: rows / alarms with an exact Poisson 95% interval on the alarm count (also
  for each of the two against its own 2 x ert); and the share of windows with an alarm against
  1 - (1 - 1/ert)^200 (geometric run lengths).
- Power: shifts of graded size applied to the last unshifted test rows (past the false-alarm windows when the
  pool has room): monthly_charges and usage_gb moved by 0.1, 0.25 and 0.5 standard deviations (of the training
  rows); contract's month-to-month share raised by 5, 10 and 20 percentage points (rows moved from one- and
  two-year contracts). P(churn) is recomputed on the shifted rows. Batch: the share of K shifted windows
  flagged (power) and the expected rows to detection, window / power (independent windows). Online: rows of a
  shifted stream until the first alarm of restarted detectors (median of S streams, cut at C rows), beside the
  same on the unshifted rows (the baseline row). ks and cvm_online test numeric inputs only and chi2
  categorical ones only: they see the other kind's shifts only through the prediction.

Usage: .venv/bin/python benchmarks/drift_calibration.py [--quick] [--windows N] [--detectors ks,chi2,...]
About 7 minutes on 2 cores, most of it the online detectors (fits calibrate by simulation; rows are tested
one at a time); --quick (100 unshifted windows, fewer shifted ones) about 3.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from raymlops.config.monitoring import DriftConfig
from raymlops.data.demo import write_demo_data
from raymlops.monitoring.drift import PREDICTION, DriftTester, _Column, fit_inputs, fit_prediction

COLUMNS = [
    _Column("plan", "string"),
    _Column("region", "string"),
    _Column("contract", "string"),
    _Column("payment_method", "string"),
    _Column("autopay", "boolean"),
    _Column("tenure_months", "integer"),
    _Column("age", "integer"),
    _Column("monthly_charges", "number"),
    _Column("usage_gb", "number"),
    _Column("support_calls", "integer"),
]
CATEGORICAL = [c.name for c in COLUMNS if c.type in ("string", "boolean")]
NUMERIC = [c.name for c in COLUMNS if c.name not in CATEGORICAL]
BATCH, ONLINE = ("ks", "chi2", "tabular"), ("cvm_online", "fet_online")
SHIFTS = [
    ("monthly_charges", "std", (0.1, 0.25, 0.5)),
    ("usage_gb", "std", (0.1, 0.25, 0.5)),
    ("contract", "pp", (0.05, 0.10, 0.20)),
]
SEED_ROWS = 50_000  # rows per test seed (train file; the holdout adds a tenth)


def _seed_rows(args: tuple[str, int]) -> pd.DataFrame:
    out, seed = args
    paths = write_demo_data(Path(out) / f"seed{seed}", rows=SEED_ROWS, seed=seed)
    return pd.concat([pd.read_parquet(paths[k]) for k in ("train", "holdout")], ignore_index=True)


def test_rows(tmp: Path, rows: int) -> pd.DataFrame:
    """At least ``rows`` unshifted rows from seeds 8, 9, ... (two processes)."""
    seeds = range(8, 8 + int(np.ceil(rows / (1.1 * SEED_ROWS))))
    with ProcessPoolExecutor(2) as pool:
        return pd.concat(pool.map(_seed_rows, [(str(tmp), s) for s in seeds]), ignore_index=True)


class Model:
    """One-hot + logistic regression on the ten inputs: P(churn) for the prediction detector."""

    def __init__(self, train: pd.DataFrame):
        from sklearn.compose import make_column_transformer
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import OneHotEncoder, StandardScaler

        prep = make_column_transformer(
            (OneHotEncoder(handle_unknown="ignore"), CATEGORICAL),
            (make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), NUMERIC),
        )
        self.pipe = make_pipeline(prep, LogisticRegression(max_iter=1000)).fit(self._x(train), train["churned"])

    @staticmethod
    def _x(df: pd.DataFrame) -> pd.DataFrame:
        return df[NUMERIC].astype(float).join(df[CATEGORICAL].astype(str))

    def with_prediction(self, df: pd.DataFrame) -> pd.DataFrame:
        return df.assign(**{PREDICTION: self.pipe.predict_proba(self._x(df))[:, 1]})

    def auc(self, df: pd.DataFrame) -> float:
        from sklearn.metrics import roc_auc_score

        return roc_auc_score(df["churned"], self.with_prediction(df)[PREDICTION])


class Tap:
    """Keeps a detector's last own result: DriftTester's merged result lists the inputs' alarms only."""

    def __init__(self, detector):
        self.detector, self.test, self.last = detector, detector.test, None
        detector.test = self

    def __call__(self, window: pd.DataFrame) -> dict:
        self.last = self.test(window)
        return self.last

    def detections(self) -> list[dict]:
        return self.last.get("detections") or []


def fit(kind: str, train: pd.DataFrame, valid: pd.DataFrame, model: Model, out: Path) -> tuple[DriftTester, dict]:
    cfg = DriftConfig(detector=kind)
    drift = cfg.model_dump()
    rows = cfg.reference_rows() if hasattr(cfg, "reference_rows") else cfg.reference_size
    np.random.seed(0)  # alibi-detect's online calibration draws from numpy's global generator
    fit_inputs(train.sample(rows, random_state=0), COLUMNS, drift, out)
    ref_pred = model.with_prediction(valid.sample(min(rows, len(valid)), random_state=0))[PREDICTION]
    fit_prediction(ref_pred.reset_index(drop=True), drift, out)
    return DriftTester(out), {**drift, "reference_rows": rows}


def clopper_pearson(k: int, n: int) -> tuple[float, float]:
    return (stats.beta.ppf(0.025, k, n - k + 1) if k else 0.0, stats.beta.ppf(0.975, k + 1, n - k) if k < n else 1.0)


def poisson_ci(k: int) -> tuple[float, float]:
    return (stats.chi2.ppf(0.025, 2 * k) / 2 if k else 0.0, stats.chi2.ppf(0.975, 2 * k + 2) / 2)


def verdict(target: float, lo: float, hi: float) -> str:
    """Where the target false-alarm rate lies against the measured rate's interval."""
    if lo <= target <= hi:
        return "inside"
    return "above (conservative)" if target > hi else "BELOW (too many alarms)"


def most_flagged(flags: dict[str, int]) -> str:
    return ", ".join(f"{n} {k}" for n, k in sorted(flags.items(), key=lambda kv: -kv[1])[:3]) or "-"


def batch_false_alarms(tester: DriftTester, drift: dict, pool: pd.DataFrame, windows: int, window: int) -> list:
    alarms, flags = 0, {}
    for i in range(windows):
        got = tester.test(pool.iloc[i * window : (i + 1) * window])
        alarms += got["is_drift"]
        for name in (n for n, f in got["features"].items() if f["is_drift"]):
            flags[name] = flags.get(name, 0) + 1
    lo, hi = clopper_pearson(alarms, windows)
    return [
        drift["detector"],
        len(tester.columns),
        drift["reference_rows"],
        f"{alarms}/{windows}",
        f"{alarms / windows:.3f}",
        f"{lo:.3f}-{hi:.3f}",
        drift["p_val"],
        verdict(drift["p_val"], lo, hi),
        most_flagged(flags),
    ]


def per_alarm(rows: int, alarms: int, ert: int) -> str:
    """Rows per alarm with its 95% interval (exact Poisson on the count), and the target ``ert`` against it."""
    lo, hi = poisson_ci(alarms)
    return (
        f"{rows / max(alarms, 1):,.0f} ({rows / hi:,.0f}-{rows / lo if lo else np.inf:,.0f}); "
        f"target {ert:,}: {verdict(1 / ert, lo / rows, hi / rows)}"
    )


def online_false_alarms(
    tester: DriftTester, taps: list[Tap], drift: dict, pool: pd.DataFrame, windows: int, w: int
) -> list:
    counts, flags, flagged_windows = [0] * len(taps), {}, 0
    for i in range(windows):
        flagged_windows += tester.test(pool.iloc[i * w : (i + 1) * w])["is_drift"]
        for j, tap in enumerate(taps):
            counts[j] += len(tap.detections())
            for name in (n for d in tap.detections() for n in d["features"]):
                flags[name] = flags.get(name, 0) + 1
    rows, ert = windows * w, drift["ert"]
    lo, hi = clopper_pearson(flagged_windows, windows)
    target = 1 - (1 - 1 / ert) ** w
    return [
        tester.kind,
        len(tester.columns),
        f"{rows:,}",
        per_alarm(rows, sum(counts), ert),
        "; ".join(
            f"{name} {per_alarm(rows, k, tap.detector.settings['ert'])}"
            for name, k, tap in zip(("inputs", "prediction"), counts, taps)
        ),
        f"{flagged_windows}/{windows} = {flagged_windows / windows:.3f} ({lo:.3f}-{hi:.3f})",
        f"{target:.3f}: {verdict(target, lo, hi)}",
        most_flagged(flags),
    ]


def shifted(rows: pd.DataFrame, ref: pd.DataFrame, feature: str, unit: str, size: float, model: Model) -> pd.DataFrame:
    out = rows.copy()
    if unit == "std":
        out[feature] = out[feature] + size * ref[feature].std()
    else:  # move `size` of all rows from the other contracts to month-to-month
        share = (ref[feature] == "month-to-month").mean()
        move = (out[feature] != "month-to-month") & (np.random.default_rng(1).random(len(out)) < size / (1 - share))
        out.loc[move, feature] = "month-to-month"
    return model.with_prediction(out)


def rows_to_alarm(tester: DriftTester, taps: list[Tap], stream: pd.DataFrame, chunk: int = 50) -> float:
    """Rows of ``stream`` fed to restarted detectors until the first alarm (inf: none)."""
    for tap in taps:
        tap.detector.reset()
    for start in range(0, len(stream), chunk):
        tester.test(stream.iloc[start : start + chunk])
        alarms = [d["row"] for tap in taps for d in tap.detections()]
        if alarms:
            return start + min(alarms) + 1
    return np.inf


def power_cell(kind: str, tester: DriftTester, taps: list[Tap], rows: pd.DataFrame, args, window: int) -> str:
    if kind in BATCH:
        windows = (rows.iloc[i * window : (i + 1) * window] for i in range(args.shift_windows))
        p = sum(tester.test(w)["is_drift"] for w in windows) / args.shift_windows
        return f"{p:.0%}, ~{window / p:,.0f} rows" if p else "0%, -"
    found = [rows_to_alarm(tester, taps, rows.iloc[s * args.cap : (s + 1) * args.cap]) for s in range(args.streams)]
    med = np.median(found)
    return f"{'>' + str(args.cap) if np.isinf(med) else f'{med:,.0f}'} rows, {np.isfinite(found).sum()}/{len(found)}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 null windows, 20 shifted windows, 4 streams")
    parser.add_argument("--windows", type=int, default=500, help="unshifted windows per detector")
    parser.add_argument("--online-rows", type=int, default=200, help="rows per online window")
    parser.add_argument("--shift-windows", type=int, default=50, help="shifted windows per shift (batch)")
    parser.add_argument("--streams", type=int, default=8, help="shifted streams per shift (online)")
    parser.add_argument("--cap", type=int, default=2000, help="rows per shifted stream (online)")
    parser.add_argument("--detectors", default=",".join(BATCH + ONLINE))
    args = parser.parse_args()
    if args.quick:
        args.windows, args.shift_windows, args.streams = 100, 20, 4
    kinds = args.detectors.split(",")
    started = time.perf_counter()
    window = DriftConfig().window
    with tempfile.TemporaryDirectory(prefix="drift_calibration_") as tmp_name:
        tmp = Path(tmp_name)
        ref_data = pd.read_parquet(write_demo_data(tmp / "seed7", rows=20_000, seed=7)["train"])
        train = ref_data.sample(frac=0.75, random_state=0)
        valid = ref_data.drop(train.index)
        model = Model(train)
        n_shift = max(args.shift_windows * window, args.streams * args.cap)
        pool = model.with_prediction(
            test_rows(tmp, max(args.windows * window, args.windows * args.online_rows, n_shift))
        )
        shifts = {
            (f, u, s): shifted(pool.iloc[-n_shift:], train, f, u, s, model) for f, u, sizes in SHIFTS for s in sizes
        }
        print(
            f"data: reference seed 7 ({len(train):,} training rows, model AUC on its 25% validation: "
            f"{model.auc(valid):.3f}); {len(pool):,} unshifted test rows from other seeds; "
            f"{time.perf_counter() - started:.0f} s",
            flush=True,
        )

        batch, online, power = [], [], {}
        for kind in kinds:
            t0 = time.perf_counter()
            tester, drift = fit(kind, train, valid, model, tmp / "drift" / kind)
            fit_s, t1 = time.perf_counter() - t0, time.perf_counter()
            taps = [Tap(tester.inputs), Tap(tester.prediction)]
            if kind in BATCH:
                batch.append(
                    (batch_false_alarms(tester, drift, pool, args.windows, window), fit_s, time.perf_counter() - t1)
                )
            else:
                online.append(
                    (
                        online_false_alarms(tester, taps, drift, pool, args.windows, args.online_rows),
                        fit_s,
                        time.perf_counter() - t1,
                    )
                )
            t2 = time.perf_counter()
            if kind in ONLINE:
                power[(kind, "none")] = power_cell(kind, tester, taps, pool.iloc[-n_shift:], args, window)
            for key, rows_shifted in shifts.items():
                power[(kind, key)] = power_cell(kind, tester, taps, rows_shifted, args, window)
            print(
                f"{kind}: fit {fit_s:.0f} s, unshifted {t2 - t1:.0f} s, shifted {time.perf_counter() - t2:.0f} s",
                flush=True,
            )

    if batch:
        print(
            f"\n## False alarms, batch detectors: {args.windows} unshifted windows of {window} rows each "
            "(target: p_val per window, family-wise; 95% Clopper-Pearson interval)"
        )
        print(
            "| detector | tests | reference rows | windows flagged | rate | 95% CI | target | target vs CI "
            "| most flagged tests | fit s | test s |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for row, fit_s, test_s in batch:
            print("| " + " | ".join(map(str, row)) + f" | {fit_s:.1f} | {test_s:.1f} |")
    if online:
        print(
            f"\n## False alarms, online detectors: one unshifted stream, {args.windows} windows of "
            f"{args.online_rows} rows (target: ert rows between alarms; per window "
            f"1 - (1 - 1/ert)^{args.online_rows})"
        )
        print(
            "| detector | tests | rows | rows per alarm, overall (95% CI) | inputs; prediction (each calibrated "
            "to 2 x ert) | windows with an alarm (95% CI) | target | most flagged tests | fit s | test s |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for row, fit_s, test_s in online:
            print("| " + " | ".join(map(str, row)) + f" | {fit_s:.1f} | {test_s:.1f} |")
    print(
        f"\n## Power: batch: share of {args.shift_windows} shifted {window}-row windows flagged, ~rows to detection "
        f"(window / power); online: median rows to the first alarm over {args.streams} streams, streams with an "
        f"alarm within {args.cap} rows"
    )
    print("| shift | " + " | ".join(kinds) + " |")
    print("|---" * (len(kinds) + 1) + "|")
    baseline = [
        next((f"{r[0][4]} false alarms" for r in batch if r[0][0] == k), power.get((k, "none"), "-")) for k in kinds
    ]
    print("| none (baseline) | " + " | ".join(baseline) + " |")
    for f, u, s in ((f, u, s) for f, u, sizes in SHIFTS for s in sizes):
        label = f"{f} +{s:g} std" if u == "std" else f"{f} month-to-month +{s * 100:.0f} pp"
        print(f"| {label} | " + " | ".join(power[(k, (f, u, s))] for k in kinds) + " |")
    print(f"\n(total {time.perf_counter() - started:.0f} s; numpy {np.__version__})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
