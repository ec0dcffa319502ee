"""Data quality: a training-time profile of the input columns, and checks of new data against it."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from raymlops.config.monitoring import DataQualityConfig
from raymlops.data.schema import Column
from raymlops.data.stats import MISSING, CategoricalStats, NumericStats

MAX_CATEGORIES = 1000
EXAMPLES = 5
CHECKS = ("schema", "nulls", "ranges", "unseen_categories")
_OPTION = {"schema": "schema_check", "nulls": "nulls", "ranges": "ranges", "unseen_categories": "unseen_categories"}


@dataclass
class ColumnProfile:
    """One input column as seen in training.

    ``min``/``max`` are set for number/integer columns, ``categories`` (str values, sorted) for
    string/boolean ones; ``categories`` is None when there were more than MAX_CATEGORIES.
    """

    name: str
    type: str
    null_rate: float = 0.0
    min: float | None = None
    max: float | None = None
    categories: list[str] | None = None


def _categories(values) -> list[str] | None:
    cats = sorted({str(v) for v in values})
    return cats if len(cats) <= MAX_CATEGORIES else None


@dataclass
class DataProfile:
    """Training-time profile of the input columns: null rates, numeric ranges, categories."""

    columns: list[ColumnProfile]
    rows: int

    @classmethod
    def from_stats(
        cls, columns: list[Column], nstats: dict[str, NumericStats], cstats: dict[str, CategoricalStats], rows: int
    ) -> DataProfile:
        """Builds the profile from the one-pass training stats (``stats.column_stats``).

        Timestamps get a null rate only: their stats are int64 nanoseconds, not checked for range.
        """
        out = []
        for c in columns:
            p = ColumnProfile(c.name, c.type)
            if c.name in nstats:
                s = nstats[c.name]
                p.null_rate = s.nulls / rows if rows else 0.0
                if c.type in ("number", "integer") and s.count:
                    p.min, p.max = float(s.min), float(s.max)
            elif c.name in cstats:
                s = cstats[c.name]
                p.null_rate = s.nulls / rows if rows else 0.0
                p.categories = _categories(k for k in s.counts if k != MISSING)
            out.append(p)
        return cls(out, rows)

    @classmethod
    def fit(cls, df: pd.DataFrame, columns: list[Column]) -> DataProfile:
        """Builds the profile from a pandas frame (as ``from_stats`` would from the same rows)."""
        out = []
        for c in columns:
            s = df[c.name]
            p = ColumnProfile(c.name, c.type, null_rate=float(s.isna().mean()) if len(s) else 0.0)
            if c.type in ("number", "integer"):
                x = pd.to_numeric(s, errors="coerce").dropna()
                p.null_rate = (len(s) - len(x)) / len(s) if len(s) else 0.0
                if len(x):
                    p.min, p.max = float(x.min()), float(x.max())
            elif c.type in ("string", "boolean"):
                p.categories = _categories(s.dropna().unique())
            out.append(p)
        return cls(out, len(df))

    def to_dict(self) -> dict:
        return {"rows": self.rows, "columns": [asdict(c) for c in self.columns]}

    @classmethod
    def from_dict(cls, d: dict) -> DataProfile:
        return cls([ColumnProfile(**c) for c in d["columns"]], d["rows"])

    def save(self, path: str | Path) -> None:
        """Writes the profile as JSON atomically (a temporary file, then os.replace)."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path) -> DataProfile:
        return cls.from_dict(json.loads(Path(path).read_text()))


@dataclass
class QualityReport:
    """Outcome of ``check``: ``ok`` is False when any issue has severity 'error'."""

    rows: int
    checks: list[str]
    issues: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(i["severity"] == "error" for i in self.issues)

    @property
    def failed(self) -> list[str]:
        """Names of the checks with at least one error, in CHECKS order."""
        bad = {i["check"] for i in self.issues if i["severity"] == "error"}
        return [c for c in CHECKS if c in bad]

    def add(
        self,
        check: str,
        column: str | None,
        message: str,
        observed: Any = None,
        allowed: Any = None,
        severity: str = "error",
    ) -> None:
        self.issues.append(
            {
                "check": check,
                "column": column,
                "severity": severity,
                "message": message,
                "observed": observed,
                "allowed": allowed,
            }
        )

    def to_dict(self) -> dict:
        return {"rows": self.rows, "ok": self.ok, "checks": self.checks, "failed": self.failed, "issues": self.issues}

    def format(self) -> str:
        """A verdict line, then one line per issue."""
        verdict = "OK" if self.ok else f"FAILED ({len(self.failed)} of {len(self.checks)} checks)"
        lines = [f"data quality: {verdict} on {self.rows} rows"]
        for i in self.issues:
            tag = "FAIL" if i["severity"] == "error" else "info"
            where = f"{i['column']}: " if i["column"] else ""
            lines.append(f"{tag} {i['check']:<17} {where}{i['message']}")
        return "\n".join(lines)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _examples(values: pd.Series) -> list:
    """A few distinct values, as short Python values for messages."""
    out = [v.item() if isinstance(v, np.generic) else v for v in values.drop_duplicates().head(EXAMPLES)]
    return [v[:40] if isinstance(v, str) else v for v in out]


def _wrong_type(s: pd.Series, kind: str, typed: bool = True) -> pd.Series:
    """Mask of non-null values that do not fit the schema kind (``typed``: the batch's format has types, so
    numbers written as text are wrong; in CSV, text that reads as a number is a number)."""
    present = s.notna()
    if kind in ("number", "integer"):
        if pd.api.types.is_bool_dtype(s.dtype):
            return present
        # Text is wrong even when it reads as a number: '12.5' as a string means the batch's writer typed the
        # column differently from training, and the model does not parse text.
        text = _is_text(s) & present if typed else pd.Series(False, index=s.index)
        x = pd.to_numeric(s.where(~text), errors="coerce").astype("float64")  # Arrow-backed columns have no %
        bad = text | (present & x.isna())
        return bad | (x.notna() & (x % 1 != 0)) if kind == "integer" else bad
    if kind == "timestamp":
        if pd.api.types.is_datetime64_any_dtype(s.dtype):
            return present & False
        return present & pd.to_datetime(s, errors="coerce", utc=True, format="ISO8601").isna()
    if kind == "boolean":
        if pd.api.types.is_bool_dtype(s.dtype):
            return present & False
        return present & s.astype(object).map(lambda v: not isinstance(v, (bool, np.bool_))).astype(bool)
    if s.dtype == object or isinstance(s.dtype, pd.CategoricalDtype):
        return present & s.astype(object).map(lambda v: not isinstance(v, str)).astype(bool)
    return present & (not pd.api.types.is_string_dtype(s.dtype))


def _is_text(s: pd.Series) -> pd.Series:
    if pd.api.types.is_string_dtype(s.dtype) and not isinstance(s.dtype, pd.CategoricalDtype) and s.dtype != object:
        return pd.Series(True, index=s.index)
    if s.dtype == object or isinstance(s.dtype, pd.CategoricalDtype):
        return s.astype(object).map(lambda v: isinstance(v, str)).astype(bool)
    return pd.Series(False, index=s.index)


_KIND_WORDS = {
    "number": "numbers",
    "integer": "integers",
    "boolean": "booleans",
    "string": "strings",
    "timestamp": "timestamps",
}


def check(df: pd.DataFrame, profile: DataProfile, options: dict | None = None, typed: bool = True) -> QualityReport:
    """Checks ``df`` against the training ``profile``.

    Args:
        df: new data (a serving window or a batch), one column per input.
        profile: the training profile.
        options: DataQualityConfig fields (``schema_check``, ``nulls``, ``null_tolerance``, ...);
            missing keys take DataQualityConfig's defaults.
        typed: False for a batch read from CSV, whose text that reads as a number is a number.
    """
    cfg = DataQualityConfig.model_validate(options or {})
    report = QualityReport(rows=len(df), checks=[c for c in CHECKS if getattr(cfg, _OPTION[c])])
    if not len(df):
        report.add("schema", None, "no rows", severity="info")
        return report
    n = len(df)
    known = {c.name for c in profile.columns}
    if cfg.schema_check:
        extra = [c for c in df.columns if c not in known]
        if extra:
            report.add(
                "schema",
                None,
                f"{len(extra)} extra column(s) not in training: "
                + ", ".join(map(str, extra[:10]))
                + (" ..." if len(extra) > 10 else ""),
                observed=[str(c) for c in extra],
                severity="info",
            )
    for p in profile.columns:
        if p.name not in df.columns:
            if cfg.schema_check:
                report.add("schema", p.name, "missing column", observed="missing", allowed="present")
            continue
        s = df[p.name]
        if cfg.schema_check:
            bad = _wrong_type(s, p.type, typed)
            k = int(bad.sum())
            if k:
                as_text = typed and p.type in ("number", "integer") and bool(_is_text(s[bad]).all())
                how = "arrive as text, not" if as_text else "are not"
                report.add(
                    "schema",
                    p.name,
                    f"{k} of {n} values ({_pct(k / n)}) {how} {_KIND_WORDS[p.type]}, e.g. {_examples(s[bad])}",
                    observed=k,
                    allowed=0,
                )
        missing = s.isna()
        if cfg.nulls:
            rate, allowed = float(missing.mean()), p.null_rate + cfg.null_tolerance
            if rate > allowed + 1e-12:
                report.add(
                    "nulls",
                    p.name,
                    f"{_pct(rate)} null (training {_pct(p.null_rate)} + {_pct(cfg.null_tolerance)} allowed)",
                    observed=rate,
                    allowed=allowed,
                )
        present = s[~missing]
        if not len(present):
            continue
        if cfg.ranges and p.min is not None:
            x = pd.to_numeric(present, errors="coerce").dropna()
            out = x[(x < p.min) | (x > p.max)]
            share = len(out) / len(x) if len(x) else 0.0
            if share > cfg.range_tolerance:
                report.add(
                    "ranges",
                    p.name,
                    f"{_pct(share)} of values outside training [{p.min:g}, {p.max:g}] "
                    f"({_pct(cfg.range_tolerance)} allowed); seen [{x.min():g}, {x.max():g}], "
                    f"e.g. {_examples(out)}",
                    observed=share,
                    allowed=cfg.range_tolerance,
                )
        if cfg.unseen_categories and p.categories is not None:
            counts: dict[str, int] = {}
            for v, c in present.value_counts().items():
                counts[str(v)] = counts.get(str(v), 0) + int(c)
            seen = set(p.categories)
            unseen = sorted(((v, c) for v, c in counts.items() if v not in seen), key=lambda vc: (-vc[1], vc[0]))
            share = sum(c for _, c in unseen) / len(present)
            if share > cfg.unseen_tolerance:
                top = dict(unseen[:EXAMPLES])
                report.add(
                    "unseen_categories",
                    p.name,
                    f"{_pct(share)} of values never seen in training "
                    f"({_pct(cfg.unseen_tolerance)} allowed), e.g. {top}",
                    observed=share,
                    allowed=cfg.unseen_tolerance,
                )
    return report
