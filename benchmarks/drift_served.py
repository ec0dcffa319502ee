"""The drift verdict's false-alarm rate on traffic served through /predict, with its target from the same run.

The quickstart model (trained on the demo's six months, seed 7) is served with drift windows of 100 rows.
Then 200 windows of unshifted traffic are posted to /predict: customers of the same six months drawn with
another seed, so never used in training or as the reference. The monitor's history gives every window's
verdict; the rate is printed with its 95% Clopper-Pearson interval beside the target ``p_val``, and how many
drift *events* ``alert_after`` (2 of 3) raised. The baseline, from the same windows' p-values: the rule before
the family-wise verdict (inputs corrected among themselves, the prediction test at the full ``p_val``, their
OR). Then windows of the shifted month follow: the number of windows until the first drifted verdict.

Usage: .venv/bin/python benchmarks/drift_served.py [--windows 200] [--rows 100]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import free_port  # noqa: E402
from drift_calibration import clopper_pearson  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "quickstart.yaml"


def records(df: pd.DataFrame, columns: list[str]) -> list[dict]:
    return [{k: (None if pd.isna(v) else v) for k, v in row.items()} for row in df[columns].to_dict("records")]


def drift_history(url: str, state_dir: str, windows: int, timeout: float = 300) -> list[dict]:
    """The monitor's drift verdicts (its history file) once it has tested ``windows`` windows."""
    from raymlops.monitoring.actor import read_history

    deadline = time.monotonic() + timeout
    while httpx.get(f"{url}/drift", timeout=30).json()["windows_tested"] < windows:
        if time.monotonic() > deadline:
            raise SystemExit(f"the monitor did not test {windows} windows in {timeout:.0f} s")
        time.sleep(0.5)
    return [h for h in read_history(state_dir) if h["kind"] == "drift"]


def old_rule(entry: dict, p_val: float) -> bool:
    """A window's verdict as computed before one family-wise verdict: Bonferroni over the inputs only, and the
    prediction test at the full ``p_val``."""
    inputs = {n: f["p_value"] for n, f in entry["features"].items() if n != "__prediction__"}
    pred = entry["features"].get("__prediction__", {}).get("p_value")
    return any(p <= p_val / len(inputs) for p in inputs.values()) or (pred is not None and pred <= p_val)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=200)
    parser.add_argument("--rows", type=int, default=100, help="rows per drift window")
    args = parser.parse_args()
    from raymlops import Pipeline, load_model
    from raymlops.data.demo import write_demo_data

    with tempfile.TemporaryDirectory(prefix="drift_served_") as tmp:
        paths = write_demo_data(Path(tmp) / "data", rows=20_000)
        fresh = pd.read_parquet(write_demo_data(Path(tmp) / "fresh", rows=args.windows * args.rows, seed=99)["train"])
        shifted = pd.read_parquet(paths["shifted"])
        pipe = Pipeline.from_yaml(
            CONFIG,
            overrides=[
                f"storage={tmp}/store",
                f"serving.port={free_port()}",
                f"sources.customers.path={paths['train']}",
                "training.tune.num_samples=1",
                f"monitoring.drift.window={args.rows}",
                "serving.request_log=null",
                "monitoring.alerts=[]",
            ],
            say=None,
        )
        try:
            result = pipe.run(progress=False)
            url = result.endpoint
            from raymlops.pipeline.serve import monitoring_dir

            state = str(Path(monitoring_dir(pipe.config, pipe.app_name)) / "default")
            columns = load_model(result.run_dir).schema.names
            started = time.perf_counter()
            fresh = fresh.sample(frac=1, random_state=0).head(args.windows * args.rows)
            for i in range(0, len(fresh), args.rows):
                r = httpx.post(
                    f"{url}/predict", json={"instances": records(fresh.iloc[i : i + args.rows], columns)}, timeout=60
                )
                r.raise_for_status()
            calm = drift_history(url, state, args.windows)[-args.windows :]
            seconds = time.perf_counter() - started
            flagged = sum(h["is_drift"] for h in calm)
            from raymlops.monitoring.actor import read_history

            events = [e for e in read_history(Path(state).parent) if e.get("type") == "drift"]
            before = sum(old_rule(h, pipe.config.monitoring.drift.p_val) for h in calm)
            lo, hi = clopper_pearson(flagged, len(calm))
            p_val = pipe.config.monitoring.drift.p_val
            print(f"unshifted traffic through /predict: {len(calm)} windows of {args.rows} rows in {seconds:.1f} s")
            print(
                f"  drifted verdicts: {flagged} of {len(calm)} = {flagged / len(calm):.1%} "
                f"(95% CI {lo:.1%} to {hi:.1%}); target p_val {p_val:.1%}: "
                f"{'inside' if lo <= p_val <= hi else 'below' if hi < p_val else 'ABOVE'} the interval"
            )
            blo, bhi = clopper_pearson(before, len(calm))
            print(
                f"  baseline, the rule before (prediction test at the full p_val): {before} of {len(calm)} = "
                f"{before / len(calm):.1%} (95% CI {blo:.1%} to {bhi:.1%})"
            )
            print(f"  drift events (alert_after 2 of 3): {len(events)}")
            for n in range(1, 6):  # shifted windows until the first drifted verdict
                rows = shifted.sample(args.rows, random_state=n)
                httpx.post(f"{url}/predict", json={"instances": records(rows, columns)}, timeout=60).raise_for_status()
                if drift_history(url, state, args.windows + n)[-1]["is_drift"]:
                    print(f"shifted month: drifted verdict in window {n} after the switch")
                    break
            else:
                print("shifted month: no drifted verdict within 5 windows")
        finally:
            pipe.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
