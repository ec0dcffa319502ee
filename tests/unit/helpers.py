"""Functions referenced by tests as `module:function` custom steps."""

import pandas as pd


def double_x(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    df["x"] = df["x"] * 2
    return df
