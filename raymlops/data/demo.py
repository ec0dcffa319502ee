"""A seeded, realistic telecom churn dataset for the quickstart and the tests.

Files written:
    train.parquet    six months of customer snapshots (Jan-Jun 2024), the training source
    holdout.parquet  July 2024 from the same distribution (no drift)
    shifted.parquet  September 2024 after a price rise and a marketing push: drifted inputs
    transactions.parquet  card transactions of customers 1..N/10 over the 182 days before ``anchor``
                     (default: today, UTC), so the online store has fresh values; some rows are ingested late
    labels.parquet   churn labels observed at points in time, driven by the recent transactions
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

PLANS = ["basic", "standard", "premium"]
REGIONS = ["north", "south", "east", "west"]
CONTRACTS = ["month-to-month", "one-year", "two-year"]
PAYMENTS = ["card", "bank-transfer", "electronic-check"]


def _customers(rng: np.random.Generator, n: int, start: str, days: int, shifted: bool, first_id: int) -> pd.DataFrame:
    plan_p = [0.55, 0.30, 0.15] if shifted else [0.35, 0.40, 0.25]
    region_p = [0.15, 0.15, 0.35, 0.35] if shifted else [0.25, 0.25, 0.25, 0.25]
    plan = rng.choice(PLANS, n, p=plan_p)
    base_price = pd.Series(plan).map({"basic": 25.0, "standard": 55.0, "premium": 95.0}).to_numpy()
    price_rise = 1.30 if shifted else 1.0
    tenure = rng.gamma(2.0, 12.0 if not shifted else 6.0, n).round().astype(int) + 1
    contract = rng.choice(CONTRACTS, n, p=[0.55, 0.25, 0.20] if not shifted else [0.75, 0.15, 0.10])
    monthly = base_price * price_rise + rng.normal(0, 6, n)
    usage = np.exp(rng.normal(2.6 if not shifted else 2.2, 0.6, n))
    calls = rng.poisson(1.2 if not shifted else 2.4, n)
    autopay = rng.random(n) < 0.6
    age = rng.normal(44, 13, n).clip(18, 90).round().astype(int)

    # Churn signal: short tenure, month-to-month, support calls, high price, low usage; autopay helps.
    logit = (
        -1.4
        - 0.045 * tenure
        + 1.3 * (contract == "month-to-month")
        - 0.9 * (contract == "two-year")
        + 0.35 * calls
        + 0.018 * (monthly - 55)
        - 0.25 * np.log(usage)
        - 0.5 * autopay
        + 0.3 * (plan == "basic")
    )
    churned = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)

    ts = pd.Timestamp(start) + pd.to_timedelta(rng.uniform(0, days * 86400, n), unit="s")
    df = pd.DataFrame(
        {
            "customer_id": np.arange(first_id, first_id + n),
            "event_ts": ts.floor("s"),
            "plan": plan,
            "region": rng.choice(REGIONS, n, p=region_p),
            "contract": contract,
            "payment_method": rng.choice(PAYMENTS, n),
            "tenure_months": tenure,
            "age": age,
            "monthly_charges": monthly.round(2),
            "usage_gb": usage.round(2),
            "support_calls": calls,
            "autopay": autopay,
            "churned": churned,
        }
    )
    # Realistic gaps: usage meter outages, unknown ages and payment methods.
    df.loc[rng.random(n) < 0.05, "usage_gb"] = np.nan
    df.loc[rng.random(n) < 0.03, "age"] = np.nan
    df.loc[rng.random(n) < 0.02, "payment_method"] = None
    return df.sort_values("event_ts").reset_index(drop=True)


def write_demo_data(
    out_dir: str | os.PathLike, rows: int = 20_000, seed: int = 7, anchor: str | None = None
) -> dict[str, Path]:
    """Writes the demo files under ``out_dir``; returns their paths by name.

    The transactions end at ``anchor`` (default: today's UTC midnight); only their absolute times move with
    it, so every relative quantity (and any model trained on them) is the same whatever the day.
    """
    rng = np.random.default_rng(seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    parts = {
        "train": _customers(rng, rows, "2024-01-01", 182, False, 1),
        "holdout": _customers(rng, max(rows // 10, 1000), "2024-07-01", 31, False, 10_000_000),
        "shifted": _customers(rng, max(rows // 10, 1000), "2024-09-01", 30, True, 20_000_000),
    }
    end = pd.Timestamp(anchor) if anchor else pd.Timestamp.now("UTC").tz_localize(None).normalize()
    parts.update(_transactions(rng, max(rows // 10, 200), end))
    paths = {}
    for name, df in parts.items():
        path = out / f"{name}.parquet"
        tmp = out / f".{name}.parquet.tmp"
        df.to_parquet(tmp, index=False)
        os.replace(tmp, path)
        paths[name] = path
    return paths


SEGMENTS = ["consumer", "small-business", "student"]
CATEGORIES = ["grocery", "travel", "electronics", "dining", "utilities", "fuel"]


def _transactions(rng: np.random.Generator, customers: int, end: pd.Timestamp) -> dict[str, pd.DataFrame]:
    """Transactions plus point-in-time labels whose churn depends on the spending just before them."""
    ids = np.arange(1, customers + 1)
    activity = rng.gamma(2.0, 1.5, customers)  # transactions per week
    segment = rng.choice(SEGMENTS, customers, p=[0.6, 0.25, 0.15])
    start = end - pd.Timedelta(days=182)
    n_tx = rng.poisson(activity * 26).clip(1)
    cust = np.repeat(ids, n_tx)
    days = rng.uniform(0, 182, len(cust))
    # Disengaging customers spend less and less often towards the end of the period.
    fading = rng.random(customers) < 0.3
    keep = ~(fading[cust - 1] & (rng.random(len(cust)) < days / 182))
    cust, days = cust[keep], days[keep]
    event = start + pd.to_timedelta(days * 86400, unit="s").floor("s")
    lag = pd.to_timedelta(rng.exponential(600, len(cust)).round(), unit="s")
    late = rng.random(len(cust)) < 0.03  # some rows arrive days later
    lag = lag + pd.to_timedelta(np.where(late, rng.uniform(1, 5, len(cust)) * 86400, 0).round(), unit="s")
    amount = np.exp(rng.normal(3.3, 0.8, len(cust))).round(2)
    tx = pd.DataFrame(
        {
            "customer_id": cust,
            "event_time": event,
            "ingested_at": event + lag,
            "amount": amount,
            "merchant_category": rng.choice(CATEGORIES, len(cust)),
            "balance": (rng.normal(1500, 700, len(cust)) * np.where(fading[cust - 1], 0.5, 1.0)).round(2),
            "segment": segment[cust - 1],
        }
    )
    tx.loc[rng.random(len(tx)) < 0.02, "amount"] = np.nan
    tx = tx.sort_values(["event_time", "customer_id"]).reset_index(drop=True)

    n_labels = customers * 4
    lab_cust = rng.choice(ids, n_labels)
    lab_time = start + pd.to_timedelta(rng.uniform(30, 182, n_labels) * 86400, unit="s").floor("s")
    # The label depends on each customer's spend in the 30 days before the label time (computed exactly).
    spend = np.zeros(n_labels)
    count = np.zeros(n_labels)
    by_cust = {c: g for c, g in tx.groupby("customer_id")}
    for i, (c, t) in enumerate(zip(lab_cust, lab_time)):
        g = by_cust.get(c)
        if g is None:
            continue
        w = g[(g.event_time > t - pd.Timedelta(days=30)) & (g.event_time <= t)]
        spend[i], count[i] = w.amount.sum(), len(w)
    logit = 0.8 - 0.35 * count + 0.002 * (150 - np.minimum(spend, 600)) + 0.6 * (segment[lab_cust - 1] == "student")
    churned = (rng.random(n_labels) < 1 / (1 + np.exp(-logit))).astype(int)
    labels = pd.DataFrame(
        {
            "customer_id": lab_cust,
            "event_timestamp": lab_time,
            "tenure_months": rng.integers(1, 60, n_labels),
            "churned": churned,
        }
    )
    return {"transactions": tx, "labels": labels.sort_values("event_timestamp").reset_index(drop=True)}
