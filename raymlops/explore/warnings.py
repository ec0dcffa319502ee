"""What a person should read first in a profile: each warning names its column, what was found and the
threshold it crossed."""

from __future__ import annotations

from typing import Any

NULL_SHARE = 0.2  # missing in at least this share of rows
ZERO_SHARE = 0.5  # numeric columns mostly zeros
SKEW = 2.0  # |adjusted skewness| above this: a log or rank transform may help
CARDINALITY = 0.5  # categorical columns whose distinct values exceed this share of values (and 50): high cardinality
HIGH_CARDINALITY = 50
IDENTIFIER = 0.95  # integer or string columns distinct in at least this share of rows: identifiers
CORRELATION = 0.95  # |Pearson r| of a numeric pair: one of them adds little
LEAKAGE = 0.8  # a feature explaining at least this share of the label's entropy alone: suspect leakage
GAP_DAYS = 2  # empty days in a row inside the time range


def warnings_of(p: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def warn(kind: str, column: str | None, message: str) -> None:
        out.append({"kind": kind, "column": column, "message": message})

    for name, c in p["columns"].items():
        if c["count"] and c["distinct"] <= 1:
            warn("constant", name, f"{name} has a single value ({c['count']:,} non-missing rows)")
        elif not c["count"]:
            warn("constant", name, f"{name} is missing in every row")
        if c["null_share"] >= NULL_SHARE:
            warn("nulls", name, f"{name} is missing in {c['null_share']:.1%} of rows (>= {NULL_SHARE:.0%})")
        if name == p.get("label"):  # a label is meant to be what it is: zeros and skew are its class balance
            continue
        if is_identifier(c):
            warn(
                "identifier",
                name,
                f"{name} has a distinct value in nearly every row ({c['distinct']:,} distinct "
                f"in {c['count']:,}): an identifier, not a feature?",
            )
            continue
        if c.get("infinite"):
            warn("infinite", name, f"{name} holds {c['infinite']:,} infinite value(s), left out of its statistics")
        if c["kind"] == "numeric" and c["count"]:
            if c["zero_share"] >= ZERO_SHARE:
                warn("zeros", name, f"{name} is 0 in {c['zero_share']:.1%} of its values")
            if c["skew"] is not None and abs(c["skew"]) > SKEW:
                warn("skew", name, f"{name} is skewed (skewness {c['skew']:.2f}, |skew| > {SKEW:g})")
        if (
            c["kind"] == "categorical"
            and c["distinct"] > HIGH_CARDINALITY
            and c["distinct"] >= CARDINALITY * c["count"]
        ):
            warn(
                "cardinality",
                name,
                f"{name} has {c['distinct']:,} distinct values in {c['count']:,} rows: "
                "an identifier rather than a category?",
            )
    table = p["table"]
    if table["duplicate_rows"] > table["duplicate_rows_error"]:
        warn(
            "duplicates",
            None,
            f"about {table['duplicate_rows']:,} duplicate rows (± {table['duplicate_rows_error']:,}) of {p['rows']:,}",
        )
    corr = table.get("correlation")
    if corr:
        names = corr["columns"]
        for i, row in enumerate(corr["r"]):
            for j in range(i + 1, len(names)):
                if row[j] is not None and abs(row[j]) >= CORRELATION:
                    warn("correlation", names[i], f"{names[i]} and {names[j]} are correlated (r = {row[j]:.3f})")
    for name, a in (p.get("associations") or {}).items():
        if a["uncertainty"] >= LEAKAGE:
            warn(
                "leakage",
                name,
                f"{name} alone explains {a['uncertainty']:.0%} of the label's entropy "
                f"({a['mutual_information']:.3f} of {a['label_entropy']:.3f} bits): a leak from "
                "the label or from the future?",
            )
    days = table.get("rows_per_day")
    if days and days.get("bucket_days", 1) == 1:  # gaps are read per day only
        gaps = _gaps(days["counts"])
        if gaps:
            start, length = max(gaps, key=lambda g: g[1])
            import datetime as dt

            first = dt.date.fromisoformat(days["first"]) + dt.timedelta(days=start)
            warn(
                "time_gaps",
                p.get("time"),
                f"{len(gaps)} gap(s) of >= {GAP_DAYS} empty days in {p.get('time')}; "
                f"the longest: {length} days from {first.isoformat()}",
            )
    return out


def is_identifier(c: dict[str, Any]) -> bool:
    """Integer or string columns with a distinct value in (nearly) every row: keys, not features."""
    integer = c["kind"] == "numeric" and "int" in c["type"]
    return (
        (integer or c["kind"] == "categorical")
        and c["count"] > HIGH_CARDINALITY
        and c["distinct"] >= IDENTIFIER * c["count"]
    )


def _gaps(counts: list[int]) -> list[tuple[int, int]]:
    """(start index, length) of every run of at least GAP_DAYS zero days."""
    gaps, start = [], None
    for i, n in enumerate([*counts, 1]):
        if n == 0 and start is None:
            start = i
        elif n != 0 and start is not None:
            if i - start >= GAP_DAYS:
                gaps.append((start, i - start))
            start = None
    return gaps
