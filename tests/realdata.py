"""A real-world dataset with documented drift, read from a package's files: the US Census (ACS PUMS)
employment data of Massachusetts that NannyML ships (reference year 2015; analysis years 2016-2018).

``bash scripts/setup.sh`` downloads the pinned nannyml wheel (its files only: nannyml is not installed, its
pins do not resolve with this stack) to ``.venv/share/datasets``; the data is read from inside it.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
WHEEL = ROOT / ".venv" / "share" / "datasets" / "nannyml-0.13.1-py3-none-any.whl"
DATA = "nannyml/datasets/data/employment_MA_{}.pq"
NUMERIC = ["AGEP"]  # age; every other feature is a coded category
CATEGORICAL = [
    "SCHL",
    "MAR",
    "RELP",
    "DIS",
    "ESP",
    "CIT",
    "MIG",
    "MIL",
    "ANC",
    "NATIVITY",
    "DEAR",
    "DEYE",
    "DREM",
    "SEX",
    "RAC1P",
]
FEATURES = NUMERIC + CATEGORICAL


def load_census() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(2015, 2016-2018): features as numbers and strings, plus ``year``, ``employed`` and the shipped model's
    ``predicted_probability``, in the files' order."""
    if not WHEEL.is_file():
        raise FileNotFoundError(f"{WHEEL} is missing: run `bash scripts/setup.sh` (it downloads the nannyml wheel)")
    with zipfile.ZipFile(WHEEL) as z:
        read = lambda name: pd.read_parquet(io.BytesIO(z.read(DATA.format(name))))  # noqa: E731
        reference, analysis, target = read("reference"), read("analysis"), read("analysis_target")
    analysis = analysis.merge(target, on="id", how="left", validate="one_to_one")
    for df in (reference, analysis):
        for c in CATEGORICAL:
            df[c] = df[c].astype(str)
        df["AGEP"] = df["AGEP"].astype(float)
    return reference, analysis
