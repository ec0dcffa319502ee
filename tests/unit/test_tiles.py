"""Online window tiles without a store: the cover of a window, and tiles against a brute-force reference."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from raymlops.config.models import FeatureViewConfig
from raymlops.features.tiles import EXPIRY_GRACE_NS, FANOUT, build_tiles, cover, covers, merge, tile_spec, window_values

MIN = 60 * 10**9
FUNCS = ["sum", "mean", "count", "min", "max", "std", "last", "distinct_count"]


def view(tile: str | None = "1m", windows=("1h", "1d")) -> FeatureViewConfig:
    aggs = [
        {"column": "cat" if f in ("last", "distinct_count") else "x", "function": f, "window": w}
        for f in FUNCS
        for w in windows
    ]
    return FeatureViewConfig(
        name="v",
        entity="e",
        source="s",
        timestamp="ts",
        created_timestamp="c",
        aggregations=aggs,
        **({"tile": tile} if tile else {}),
    )


@pytest.mark.parametrize("seed", range(30))
def test_cover_is_the_window_in_disjoint_aligned_tiles(seed):
    rng = np.random.default_rng(seed)
    spec = tile_spec(view(windows=("1h", "30d")))
    t = spec.tile_ns
    now = int(rng.integers(10**18, 2 * 10**18))
    w = int(rng.choice([3600, 30 * 86400, 86400 * 3 + 77])) * 10**9
    tiles = cover(spec, now, w)
    covered = []
    for level, index in tiles:
        size = FANOUT**level
        assert level < spec.levels
        covered += range(index * size, (index + 1) * size)
    a, b = math.ceil((now - w) / t), (now - 1) // t + 1
    assert sorted(covered) == list(range(a, b))  # exactly the window's tiles, none twice
    assert len(tiles) <= 2 * (FANOUT - 1) * spec.levels + FANOUT
    # a read at ``now`` still finds every tile a while later (after a materialization that expires tiles)
    assert min(spec.expires(level, index) for level, index in tiles) > now + EXPIRY_GRACE_NS


def test_default_tile_and_config_errors():
    assert view(tile=None).tile_seconds == 60
    assert (
        FeatureViewConfig(
            name="v",
            entity="e",
            source="s",
            timestamp="ts",
            aggregations=[{"column": "x", "function": "sum", "window": "30s"}],
        ).tile_seconds
        == 30
    )
    with pytest.raises(ValueError, match="longer than the windows"):
        view(tile="2h")
    with pytest.raises(ValueError, match="no 'aggregations'"):
        FeatureViewConfig(name="v", entity="e", source="s", timestamp="ts", fields=["x"], tile="1m")


def events(rng, n: int, start: int) -> pd.DataFrame:
    df = pd.DataFrame(
        {
            "k": rng.integers(0, 5, n),
            "ts": start + rng.integers(0, 2 * 24 * 60, n) * MIN // 2,
            "c": rng.integers(0, 3, n),
            "x": rng.normal(50, 10, n).round(2),
            "cat": rng.choice(list("abcd"), n),
        }
    )
    df.loc[rng.random(n) < 0.1, "x"] = np.nan
    df.loc[rng.random(n) < 0.1, "cat"] = None
    return df


def table(df: pd.DataFrame) -> pa.Table:
    t = pa.timestamp("ns", tz="UTC")
    return pa.table(
        {
            "k": df.k,
            "ts": pa.array(df.ts, pa.int64()).cast(t),
            "c": pa.array(df.c, pa.int64()).cast(t),
            "x": pa.array(df.x, from_pandas=True),
            "cat": pa.array(df.cat, pa.string()),
        }
    )


def stored(built: pa.Table) -> dict:
    """{entity: {(level, index): partial}} as a store would hold them."""
    out: dict = {}
    for r in built.to_pylist():
        out.setdefault(r["k"], {})[(r["__level"], r["__index"])] = r["__partial"]
    return out


def brute(df: pd.DataFrame, k: int, lo: int, hi: int, fn: str):
    w = df[(df.k == k) & (df.ts > lo) & (df.ts <= hi)]
    col = "cat" if fn in ("last", "distinct_count") else "x"
    v = w[col].dropna()
    if fn == "count":
        return len(v)
    if fn == "distinct_count":
        return v.nunique()
    if fn == "sum":
        return float(v.sum())
    if v.empty or (fn == "std" and len(v) < 2):
        return None
    if fn == "last":
        rows = w[w[col].notna()]
        top = rows[rows.ts == rows.ts.max()]
        return set(top[top.c == top.c.max()][col])
    return float(getattr(v, fn)())


@pytest.mark.parametrize("seed", range(3))
def test_tiles_equal_the_brute_force_window_at_tile_exactness(seed):
    rng = np.random.default_rng(seed)
    start = 1_700_000_000 * 10**9 // MIN * MIN
    df = events(rng, 600, start)
    spec = tile_spec(view())
    tiles = stored(build_tiles(table(df), spec, ["k"], "ts", "c"))
    for _ in range(15):
        now = start + int(rng.integers(0, 3 * 24 * 60 * 60)) * 10**9
        for k in range(6):
            feats = [f for f in spec.windows]
            values, _ = window_values(spec, tiles.get(k, {}), covers(spec, now, feats), feats)
            for name, (pid, w) in spec.windows.items():
                fn = spec.partials[pid][0]
                # the stated exactness: both ends of the window move to tile boundaries
                lo, hi = (
                    math.ceil((now - w) / spec.tile_ns) * spec.tile_ns,
                    math.ceil(now / spec.tile_ns) * spec.tile_ns,
                )
                want, got = brute(df, k, lo, hi, fn), values[name]
                if isinstance(want, set):
                    assert got in want, (name, now, got, want)
                elif want is None:
                    assert got is None, (name, got)
                else:
                    assert got == pytest.approx(want, rel=1e-9, abs=1e-9), (name, now, got, want)


def test_merging_tiles_of_two_batches_equals_tiles_of_all_events():
    rng = np.random.default_rng(3)
    start = 1_700_000_000 * 10**9
    df = events(rng, 400, start)
    spec = tile_spec(view())
    first, second = df.iloc[:250], df.iloc[250:].assign(c=5)  # the later batch's ties win 'last'
    a, b = (
        stored(build_tiles(table(first), spec, ["k"], "ts", "c")),
        stored(build_tiles(table(second), spec, ["k"], "ts", "c")),
    )
    whole = stored(build_tiles(table(pd.concat([first, second])), spec, ["k"], "ts", "c"))
    for k, slots in whole.items():
        for slot, partial in slots.items():
            got = (
                b[k][slot]
                if slot not in a.get(k, {})
                else (merge(a[k][slot], b[k][slot], spec) if slot in b.get(k, {}) else a[k][slot])
            )
            g, w = json.loads(got), json.loads(partial)
            assert g.keys() == w.keys()
            for pid in w:
                assert (
                    g[pid] == pytest.approx(w[pid], rel=1e-9)
                    if pid.startswith(("mean", "std", "sum"))
                    else g[pid] == w[pid]
                ), (pid, g[pid], w[pid])


def test_offline_windows_as_served_equal_the_tiles_at_any_instant():
    """The skew check's premise: at a request time T (no event after T yet), the online window and the
    offline window aligned to the tile (``align_ns``) hold the same events, for every function."""
    from raymlops.features.kernels import aggregate, key_codes, sort_order, window_ranges

    rng = np.random.default_rng(9)
    start = 1_700_000_000 * 10**9
    df = events(rng, 500, start).sort_values("ts").reset_index(drop=True)
    spec = tile_spec(view())
    code, entity = key_codes([df.k.to_numpy()], [np.arange(5)])
    order = sort_order(code, df.ts.to_numpy(), df.c.to_numpy())
    for now in start + rng.integers(60, 2 * 86400, 20) * 10**9 + rng.integers(0, 10**9, 20):
        known = df[df.ts <= now]
        tiles = stored(build_tiles(table(known), spec, ["k"], "ts", "c"))
        ks = np.argsort(entity)  # queries sorted by key code, as retrieval sorts them
        q_code, q_ts = entity[ks], np.full(5, now)
        mask = (df.ts.to_numpy() <= now)[order]
        o = order[mask]
        for name, (pid, w) in spec.windows.items():
            fn, col = spec.partials[pid]
            lo, hi = window_ranges(code[o], df.ts.to_numpy()[o], q_code, q_ts, w, spec.tile_ns)
            offline = aggregate(fn, pa.array(df[col].to_numpy()[o], from_pandas=True), lo, hi, code[o]).to_pylist()
            for j, k in enumerate(ks):
                online = window_values(spec, tiles.get(k, {}), covers(spec, int(now), [name]), [name])[0][name]
                if fn == "last":
                    continue  # ties on (ts, created) may pick either row
                assert (online is None and offline[j] is None) or online == pytest.approx(offline[j], rel=1e-9), (
                    name,
                    k,
                    online,
                    offline[j],
                )


def test_skew_comparison_matches_nulls_and_tolerates_rounding():
    from raymlops.features.skew import compare, difference

    assert difference(None, float("nan"), 1e-6) == 0.0 and difference(1.0, 1.0 + 1e-9, 1e-6) == 0.0
    assert difference(0, 0.0, 1e-6) == 0.0 and difference("a", "a", 0) == 0.0
    assert difference(None, 1.0, 1e-6) == math.inf and difference("a", "b", 0) == math.inf
    assert difference(10.0, 12.5, 1e-6) == 2.5
    served = pd.DataFrame({"x": [1.0, 2.0, None], "s": ["a", "b", "c"], "request_id": ["r1", "r2", "r3"]})
    offline = pd.DataFrame({"x": [1.0, 7.0, np.nan], "s": ["a", "b", None]})
    r = compare(served, offline, ["x", "s"], ["request_id"], 1e-6)
    assert r["features"]["x"]["mismatches"] == 1 and r["features"]["x"]["largest"][0] == {
        "request_id": "r2",
        "served": 2.0,
        "offline": 7.0,
        "difference": 5.0,
    }
    assert r["features"]["s"]["largest"][0]["difference"] is None and r["max_rate"] == pytest.approx(1 / 3)


def test_small_and_bulk_tile_builds_agree(monkeypatch):
    """Pushes build tiles event by event, materialization with pandas' groupby: the same partials."""
    import raymlops.features.tiles as tiles

    rng = np.random.default_rng(4)
    df = events(rng, 300, 1_700_000_000 * 10**9)
    spec = tile_spec(view())
    small = stored(build_tiles(table(df), spec, ["k"], "ts", "c"))
    monkeypatch.setattr(tiles, "SMALL", 0)
    bulk = stored(build_tiles(table(df), spec, ["k"], "ts", "c"))
    assert small.keys() == bulk.keys()
    for k in bulk:
        assert small[k].keys() == bulk[k].keys()
        for slot in bulk[k]:
            a, b = json.loads(small[k][slot]), json.loads(bulk[k][slot])
            for pid in b:
                assert (
                    a[pid] == pytest.approx(b[pid], rel=1e-9, abs=1e-9)
                    if pid.startswith(("mean", "std", "sum"))
                    else a[pid] == b[pid]
                ), (pid, a[pid], b[pid])
