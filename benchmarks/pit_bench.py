"""Point-in-time historical retrieval: raymlops' distributed as-of join vs single-process pandas merge_asof.

Generates N entity (label) rows and M feature rows with Feast semantics in mind (ttl 7d, ties in event time
broken by the created timestamp, unknown keys, rows outside the ttl, exact-time and ttl-boundary matches),
commits the features to a raymlops OfflineStore (date-partitioned Parquet), then times

  * raymlops: FeatureStore.get_historical_features(entity_df, ["txn_stats:*"]) on a local Ray started here
    with num_cpus = all CPUs (after an untimed warm-up retrieval on a small separate view, so Ray worker
    start-up is not counted), and
  * pandas:   pd.read_parquet of the same store files + sort + pd.merge_asof(by=key, tolerance=7d) +
    restore input order, in a fresh subprocess,

checks that both give the same values and nulls row for row (exit code 1 if not), and prints entity rows/s,
peak memory and the raymlops/pandas time ratio, all from the same run (--rounds R alternates the two R times).
--profile adds one more raymlops run timed phase by phase (count, read, shuffle + merge, collect) with the calls
FeatureStore makes, and every Ray task of that run from ray.timeline() grouped by function.
--shuffled-write writes the feature rows in random order instead of event-time order.
--address ADDR --store URI runs raymlops on that Ray cluster instead (the feature data in object storage,
which every node reads; memory is then on the nodes and not sampled here); --summary PATH writes the figures
as JSON. benchmarks/pit_cluster_bench.py uses both to compare 1 and 2 worker nodes in one run.

Usage: .venv/bin/python benchmarks/pit_bench.py [--entities 1000000] [--features 10000000]
       [--entity-keys 100000] [--days 90] [--seed 0] [--rounds 1] [--shuffled-write] [--profile]
       [--address HOST:PORT --store s3://BUCKET/PREFIX] [--summary PATH]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

VIEW, KEY, TS, CREATED, ETS = "txn_stats", "customer_id", "event_time", "ingested_at", "event_timestamp"
TTL = "7d"
TTL_NS = 7 * 86_400 * 10**9
FIELDS = {  # feature column -> numpy dtype
    "amount_sum_7d": np.float64,
    "amount_mean_30d": np.float64,
    "txn_count_30d": np.int64,
    "balance": np.float64,
    "risk_score": np.float32,
    "segment_code": np.int32,
    "merchant_count_30d": np.int64,
}
T0 = int(pd.Timestamp("2024-01-01", tz="UTC").value)
UTC_NS = pa.timestamp("ns", tz="UTC")
WARM_FEATURES, WARM_ENTITIES = 200_000, 20_000  # the warm-up view (its own store) and entity slice
SAMPLE_S = 0.05  # memory sampling period; PSS every PSS_EVERY samples (~35 ms a read with a big object store)
PSS_EVERY = 20


# ------------------------------------------------------------------------------------------------- data


def make_features(rng: np.random.Generator, m: int, keys: int, days: int, shuffled: bool = False) -> pa.Table:
    """M feature rows over `days` days; ~10% repeat another row's (key, event time) with a later or earlier
    ingestion time, so ties in event time are decided by the created timestamp. Rows come in event-time
    order (as a daily batch would), or in random order with `shuffled`."""
    cid = rng.integers(0, keys, m, dtype=np.int64)
    ts = T0 + rng.integers(0, days * 86_400, m, dtype=np.int64) * 10**9  # whole seconds
    dup = int(m * 0.10)
    if dup and m > dup:
        src = rng.integers(0, m - dup, dup)
        cid[m - dup :], ts[m - dup :] = cid[src], ts[src]
    created = ts + rng.integers(1, 6 * 3600 * 10**9, m, dtype=np.int64)  # ns resolution: no created ties
    cols = {KEY: pa.array(cid), TS: pa.array(ts, type=UTC_NS), CREATED: pa.array(created, type=UTC_NS)}
    for name, dtype in FIELDS.items():
        if np.issubdtype(dtype, np.floating):
            vals = (rng.standard_normal(m) * 100).astype(dtype)
        else:
            vals = rng.integers(0, 1000, m).astype(dtype)
        mask = rng.random(m) < 0.02 if name == "balance" else None  # stored nulls pass through as nulls
        cols[name] = pa.array(vals, mask=mask)
    # (its own generator, so that both orders give the same rows and the same entity rows)
    order = np.random.default_rng(m).permutation(m) if shuffled else np.argsort(ts, kind="stable")
    return pa.table(cols).take(pa.array(order))


def make_entities(rng: np.random.Generator, n: int, keys: int, days: int, feats: pa.Table) -> pd.DataFrame:
    """N entity rows: ~2% unknown keys, times up to a week past the data (some beyond the ttl), 5% at exactly
    a feature row's event time and 2% at exactly event time + ttl (both bounds are inclusive)."""
    cid = rng.integers(0, int(keys * 1.02) + 1, n, dtype=np.int64)
    ts = T0 + rng.integers(0, (days + 7) * 86_400, n, dtype=np.int64) * 10**9
    fc = feats.column(KEY).to_numpy()
    ft = feats.column(TS).cast(pa.int64()).to_numpy()
    for share, shift in ((0.05, 0), (0.02, TTL_NS)):
        rows = rng.choice(n, int(n * share), replace=False)
        src = rng.integers(0, len(fc), len(rows))
        cid[rows], ts[rows] = fc[src], ft[src] + shift
    return pd.DataFrame(
        {
            KEY: cid,
            ETS: ts.astype("datetime64[ns]"),  # naive = UTC
            "label": rng.integers(0, 2, n).astype(np.int8),
        }
    )


def generate(
    tmp: Path, n: int, m: int, keys: int, days: int, seed: int, shuffled: bool, store_root: str | None = None
) -> dict:
    """Writes the entity rows (Parquet), the feature view into an OfflineStore (under ``store_root``, a path
    or URI; default ``tmp``), and a small warm-up view."""
    from raymlops.features.offline import OfflineStore

    rng = np.random.default_rng(seed)
    out = {}
    for name, n_rows, m_rows in (("main", n, m), ("warm", min(n, WARM_ENTITIES), min(m, WARM_FEATURES))):
        t = time.perf_counter()
        k = keys if name == "main" else min(keys, max(1, m_rows // 10))
        feats = make_features(rng, m_rows, k, days, shuffled)
        ents = make_entities(rng, n_rows, k, days, feats)
        store = OfflineStore(f"{store_root or tmp}/store_{name}")
        version = store.write(VIEW, feats, TS)
        ents_path = tmp / f"entities_{name}.parquet"
        ents.to_parquet(ents_path, index=False)
        files = store.paths(VIEW, version)
        out[name] = {
            "store": store.uri,
            "entities": str(ents_path),
            "files": files,
            "rows": version.rows,
            "bytes": sum(i.size for i in store.fs.get_file_info(files)),
            "seconds": time.perf_counter() - t,
            "row_groups": sum(pq.ParquetFile(store.fs.open_input_file(f)).metadata.num_row_groups for f in files),
        }
        del feats, ents
    return out


def write_config(tmp: Path, name: str, store: str, storage: str | None = None) -> Path:
    """A pipeline YAML whose features section declares the view over `store` (the source only validates)."""
    path = tmp / f"features_{name}.yaml"
    path.write_text(f"""\
name: pit-bench-{name}
storage: {storage or tmp / "raymlops"}
sources:
  transactions: {{format: parquet, path: {store}, timestamp: {TS}}}
features:
  offline_store: {{path: {store}}}
  entities:
    - {{name: customer, join_keys: [{KEY}]}}
  views:
    - name: {VIEW}
      entity: customer
      source: transactions
      timestamp: {TS}
      created_timestamp: {CREATED}
      ttl: {TTL}
      fields: [{", ".join(FIELDS)}]
""")
    return path


# --------------------------------------------------------------------------------------------- baseline


def pandas_pit(entities: pd.DataFrame, files: list[str], store: str) -> tuple[pd.DataFrame, dict]:
    """What a careful pandas user writes: read, sort, merge_asof by key with a 7d tolerance, restore order."""
    from raymlops.features.offline import filesystem

    phases, t = {}, time.perf_counter()
    feats = pq.read_table(files, columns=[KEY, TS, CREATED, *FIELDS], filesystem=filesystem(store)[0]).to_pandas()
    phases["read"], t = time.perf_counter() - t, time.perf_counter()
    left = entities.assign(**{ETS: entities[ETS].dt.tz_localize("UTC"), "__row": np.arange(len(entities))})
    left = left.sort_values(ETS, kind="stable")
    # merge_asof takes the last right row among equal times: sort ties by created time.
    feats = feats.sort_values([TS, CREATED], kind="stable")
    phases["sort"], t = time.perf_counter() - t, time.perf_counter()
    out = pd.merge_asof(
        left,
        feats,
        left_on=ETS,
        right_on=TS,
        by=KEY,
        tolerance=pd.Timedelta(TTL),
        direction="backward",
        allow_exact_matches=True,
    )
    phases["merge_asof"], t = time.perf_counter() - t, time.perf_counter()
    out = out.sort_values("__row").drop(columns=["__row", TS, CREATED]).reset_index(drop=True)
    phases["restore order"] = time.perf_counter() - t
    return out, phases


def baseline_child(entities_path: str, files: list[str], store: str, out_path: str) -> dict:
    entities = pd.read_parquet(entities_path)
    t = time.perf_counter()
    out, phases = pandas_pit(entities, files, store)
    seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    out[list(FIELDS)].to_parquet(out_path, index=False)
    return {"seconds": seconds, "phases": phases, "peak_mib": peak}


def run_child(mode: str, payload: dict) -> dict:
    """Runs this script as a fresh process (`--child MODE`), returns the JSON it prints last."""
    proc = subprocess.run(
        [sys.executable, __file__, "--child", mode, json.dumps(payload)], cwd=ROOT, capture_output=True, text=True
    )
    if proc.returncode:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise RuntimeError(f"child {mode!r} failed with exit code {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------- raymlops


class MemorySampler(threading.Thread):
    """Peak sum of RSS (every SAMPLE_S) and of PSS (every PSS_EVERY samples) over this process and all its
    descendants: a local Ray's GCS, raylet (which hosts the object store), agents and workers."""

    def __init__(self):
        super().__init__(daemon=True)
        import psutil  # ships with ray (import ray first)

        self.psutil, self.me = psutil, psutil.Process()
        self.stop_event = threading.Event()
        self.peak_rss = self.peak_pss = 0
        self.procs_at_peak = 0

    def sample(self, pss: bool = False) -> tuple[int, int, int]:
        """(RSS sum, PSS sum or 0, process count) right now."""
        procs = [self.me, *self.me.children(recursive=True)]
        rss_sum = pss_sum = 0
        for p in procs:
            try:
                info = p.memory_full_info() if pss else p.memory_info()
                rss_sum += info.rss
                pss_sum += info.pss if pss else 0
            except (self.psutil.NoSuchProcess, self.psutil.AccessDenied):
                pass
        return rss_sum, pss_sum, len(procs)

    def run(self) -> None:
        i = 0
        while not self.stop_event.is_set():
            rss, pss, procs = self.sample(pss=i % PSS_EVERY == 0)
            if rss > self.peak_rss:
                self.peak_rss, self.procs_at_peak = rss, procs
            self.peak_pss = max(self.peak_pss, pss)
            i += 1
            self.stop_event.wait(SAMPLE_S)

    def __enter__(self) -> MemorySampler:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop_event.set()
        self.join()


def raymlops_pit(config: Path, entities: pd.DataFrame) -> pd.DataFrame:
    from raymlops.features.store import FeatureStore

    return FeatureStore.from_yaml(config).get_historical_features(entities, features=[f"{VIEW}:*"])


def profile(config: Path, entities: pd.DataFrame) -> None:
    """get_historical_features again, phase by phase, with the same calls as FeatureStore (store.py) and
    pit.join_view, plus every Ray task of the run from ray.timeline() grouped by function."""
    import ray

    from raymlops.features import pit
    from raymlops.features.store import FeatureStore

    fs = FeatureStore.from_yaml(config)
    names = fs.resolve([f"{VIEW}:*"])[0][1]
    join = pit.ViewJoin(VIEW, [KEY], TS, CREATED, TTL_NS, names)
    times: dict[str, float] = {}

    def timed(name, fn):
        t = time.perf_counter()
        result = fn()
        times[name] = time.perf_counter() - t
        return result

    start = time.time()
    ents = timed("entity rows -> Ray Dataset (pit.with_row_ids)", lambda: pit.with_row_ids(entities, ETS, [KEY]))
    from raymlops.features.partition import cluster_cpus

    feats = timed(
        "group the files (offline.file_set)",
        lambda: fs.offline.file_set(VIEW, [KEY, TS, CREATED, *names], min_groups=2 * cluster_cpus()),
    )
    read_stats = f"{len(feats.groups)} file groups, read inside the shuffle map tasks"
    ds = timed("pit.join_view: read + split + merge tasks submitted", lambda: pit.join_view(ents, feats, join, ETS))

    def wait():
        out = ds.to_arrow_refs()
        ray.wait(out, num_returns=len(out), fetch_local=False)
        return out

    refs = timed("then until every output block is ready", wait)
    tables = timed("collect: ray.get of the output blocks", lambda: ray.get(refs))
    table = timed("collect: concat_tables", lambda: pa.concat_tables(tables, promote_options="default"))
    frame = timed("collect: to_pandas", table.to_pandas)
    timed(
        "collect: sort by row id, drop it",
        lambda: frame.sort_values(pit.ROW, kind="stable").drop(columns=[pit.ROW]).reset_index(drop=True),
    )
    total = sum(times.values())
    print("\nraymlops phases (driver wall clock):")
    for name, s in times.items():
        print(f"  {name:<62} {s:>8.2f} s")
    print(f"  {'total':<62} {total:>8.2f} s   ({len(refs)} output blocks, {table.num_rows:,} rows)")

    time.sleep(2)  # task events reach the GCS about once a second
    tasks: dict[str, dict] = {}
    events = [e for e in ray.timeline() if e.get("ph") == "X" and e["ts"] >= start * 1e6]
    parts = [e for e in events if e["cat"].startswith("task:") and e["cat"] != e["name"]]
    by_worker: dict[str, list] = {}
    for e in events:
        if e["cat"] in ("task:deserialize_arguments", "task:execute", "task:store_outputs"):
            by_worker.setdefault(e["tid"], []).append(e)
    for e in parts:
        row = tasks.setdefault(
            e["name"].rsplit(".", 1)[-1][:48],
            {
                "n": 0,
                "sum": 0.0,
                "first": float("inf"),
                "last": 0.0,
                "task:deserialize_arguments": 0.0,
                "task:execute": 0.0,
                "task:store_outputs": 0.0,
                "max": 0.0,
            },
        )
        row["n"] += 1
        row["sum"] += e["dur"] / 1e6
        row["max"] = max(row["max"], e["dur"] / 1e6)
        row["first"] = min(row["first"], e["ts"] / 1e6 - start)
        row["last"] = max(row["last"], (e["ts"] + e["dur"]) / 1e6 - start)
        for sub in by_worker.get(e["tid"], []):
            if e["ts"] <= sub["ts"] and sub["ts"] + sub["dur"] <= e["ts"] + e["dur"] + 1:
                row[sub["cat"]] += sub["dur"] / 1e6
    print("\nRay tasks of that run (ray.timeline(); seconds from the run's start; task s = sum over tasks):")
    print(
        f"  {'function':<48} {'tasks':>6} {'from':>7} {'to':>7} {'task s':>8} {'max s':>7} "
        f"{'args s':>7} {'exec s':>8} {'store s':>7}"
    )
    for name, r in sorted(tasks.items(), key=lambda kv: kv[1]["first"]):
        print(
            f"  {name:<48} {r['n']:>6} {r['first']:>7.2f} {r['last']:>7.2f} {r['sum']:>8.2f} {r['max']:>7.2f} "
            f"{r['task:deserialize_arguments']:>7.2f} {r['task:execute']:>8.2f} {r['task:store_outputs']:>7.2f}"
        )
    print("  (args s: fetching/deserializing inputs; exec s: the function; store s: putting outputs)")
    print(f"\n--- feature read ---\n{read_stats}")


# ------------------------------------------------------------------------------------------- comparison


def compare(ours: pd.DataFrame, theirs: pd.DataFrame) -> tuple[bool, str]:
    """Same nulls and values per feature column, row for row."""
    if len(ours) != len(theirs):
        return False, f"row counts differ: {len(ours)} vs {len(theirs)}"
    bad = []
    for c in FIELDS:
        if c not in ours.columns:
            bad.append(f"{c} missing from raymlops output")
            continue
        a = pd.to_numeric(ours[c], errors="coerce").to_numpy(np.float64, na_value=np.nan)
        b = pd.to_numeric(theirs[c], errors="coerce").to_numpy(np.float64, na_value=np.nan)
        na, nb = np.isnan(a), np.isnan(b)
        diff = (na != nb) | (~na & ~nb & (a != b))
        if diff.any():
            bad.append(f"{c}: {int(diff.sum())} rows differ (first at row {int(np.flatnonzero(diff)[0])})")
    nulls = int(np.isnan(pd.to_numeric(theirs["amount_sum_7d"]).to_numpy(np.float64, na_value=np.nan)).sum())
    return not bad, "; ".join(bad) or f"{len(ours):,} rows x {len(FIELDS)} features, {nulls:,} rows without a match"


def mib(b: float) -> float:
    return b / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=1_000_000, help="entity (label) rows N")
    parser.add_argument("--features", type=int, default=10_000_000, help="feature rows M")
    parser.add_argument("--entity-keys", type=int, default=100_000, help="distinct customer_id values")
    parser.add_argument("--days", type=int, default=90, help="time span of the feature rows (one file per day)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=1, help="timed runs per target, alternating the order")
    parser.add_argument(
        "--shuffled-write",
        action="store_true",
        help="write the feature rows in random order (OfflineStore then writes tiny row groups)",
    )
    parser.add_argument("--profile", action="store_true", help="also time raymlops phase by phase")
    parser.add_argument("--keep", metavar="DIR", help="generate into DIR and keep it (default: a temp dir)")
    parser.add_argument("--address", help="run raymlops on this Ray cluster (HOST:PORT) instead of a local Ray")
    parser.add_argument(
        "--store", help="with --address: where the feature data goes (s3://..., which every node can read)"
    )
    parser.add_argument("--summary", metavar="PATH", help="also write the figures as JSON")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        mode, payload = args.child[0], json.loads(args.child[1])
        if mode == "generate":
            result = generate(Path(payload["tmp"]), **payload["sizes"])
        else:
            result = baseline_child(payload["entities"], payload["files"], payload["store"], payload["out"])
        print(json.dumps(result))
        return 0

    if args.address and not args.store:
        parser.error("--address needs --store: the cluster's nodes share no disk with this machine")
    started = time.perf_counter()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="pit_bench_") as tmp_name:
        tmp = Path(args.keep or tmp_name)
        tmp.mkdir(parents=True, exist_ok=True)
        sizes = {
            "n": args.entities,
            "m": args.features,
            "keys": args.entity_keys,
            "days": args.days,
            "seed": args.seed,
            "shuffled": args.shuffled_write,
        }
        print(
            f"generating {args.entities:,} entity rows x {args.features:,} feature rows "
            f"({args.entity_keys:,} keys, {args.days} days) ...",
            file=sys.stderr,
            flush=True,
        )
        data = run_child("generate", {"tmp": str(tmp), "sizes": {**sizes, "store_root": args.store}})
        main_data = data["main"]

        import psutil
        import ray

        from raymlops.data.ray_env import _configure_ray_data

        if args.address:  # the settings raymlops gives every node it joins (Ray Data's reader choice, ...)
            from raymlops.data.ray_env import worker_env

            ray.init(
                address=args.address,
                runtime_env={"env_vars": worker_env()},
                log_to_driver=False,
                logging_level=logging.WARNING,
            )
            cpus, store_mem = int(ray.cluster_resources().get("CPU", 0)), 0
            workers = [n for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU")]
        else:
            cpus = os.cpu_count() or 1
            store_mem = int(psutil.virtual_memory().total * 0.30)
            ray.init(
                address="local",
                num_cpus=cpus,
                object_store_memory=store_mem,
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.WARNING,
            )
            workers = []
        _configure_ray_data(quiet=True)
        bases, ours_runs, problems, agreed = [], [], [], []
        try:
            print("raymlops warm-up (small view, untimed) ...", file=sys.stderr, flush=True)
            t = time.perf_counter()
            storage = f"{args.store}/raymlops" if args.store else None
            raymlops_pit(
                write_config(tmp, "warm", data["warm"]["store"], storage), pd.read_parquet(data["warm"]["entities"])
            )
            warm_s = time.perf_counter() - t
            entities = pd.read_parquet(main_data["entities"])
            config = write_config(tmp, "main", main_data["store"], storage)
            theirs = None
            for rnd in range(args.rounds):
                for target in ("pandas", "raymlops") if rnd % 2 == 0 else ("raymlops", "pandas"):
                    print(f"round {rnd + 1}/{args.rounds}: {target} ...", file=sys.stderr, flush=True)
                    if target == "pandas":
                        out_path = tmp / "baseline_out.parquet"
                        bases.append(
                            run_child(
                                "baseline",
                                {
                                    "entities": main_data["entities"],
                                    "files": main_data["files"],
                                    "store": main_data["store"],
                                    "out": str(out_path),
                                },
                            )
                        )
                        theirs = pd.read_parquet(out_path)
                        continue
                    mem = MemorySampler()
                    idle_rss, idle_pss, _ = mem.sample(pss=True)
                    with mem:
                        t = time.perf_counter()
                        ours = raymlops_pit(config, entities)
                        seconds = time.perf_counter() - t
                    ours_runs.append(
                        {"seconds": seconds, "mem": mem, "idle_rss": idle_rss, "idle_pss": idle_pss, "out": ours}
                    )
                for run in ours_runs:
                    if run["out"] is not None:
                        ok, detail = compare(run["out"], theirs)
                        run["out"] = None
                        (agreed if ok else problems).append(detail)
            if args.profile:
                print("raymlops profile run ...", file=sys.stderr, flush=True)
                profile(config, entities)
        finally:
            ray.shutdown()

    n = args.entities
    print(
        f"\nPoint-in-time retrieval, {n:,} entity rows x {main_data['rows']:,} feature rows "
        f"({args.entity_keys:,} keys, {args.days} days, ttl {TTL}, {len(FIELDS)} features, seed {args.seed}); "
        f"{platform.node()}, {cpus} CPUs, {mib(psutil.virtual_memory().total) / 1024:.0f} GiB, "
        f"Python {platform.python_version()}, Ray {ray.__version__}, pandas {pd.__version__}, "
        f"{time.strftime('%Y-%m-%d %H:%M:%S')}"
    )
    print(
        f"feature data: {len(main_data['files'])} Parquet files, {main_data['row_groups']:,} row groups, "
        f"{mib(main_data['bytes']):.0f} MiB, written by OfflineStore.write in "
        f"{'random' if args.shuffled_write else 'event-time'} row order ({main_data['seconds']:.1f} s); "
        f"both sides read these same files"
    )
    where = (
        f"Ray cluster {args.address}: {len(workers)} worker node(s), {cpus} CPUs; feature data in {args.store}"
        if args.address
        else f"local Ray, num_cpus={cpus}, object store {mib(store_mem):.0f} MiB"
    )
    print(where)
    print(f"{'round':<6} {'target':<9} {'entity rows':>12} {'seconds':>9} {'rows/s':>11} {'peak MiB':>9}")
    for i in range(args.rounds):
        b, r = bases[i], ours_runs[i]
        print(
            f"{i + 1:<6} {'raymlops':<9} {n:>12,} {r['seconds']:>9.2f} {n / r['seconds']:>11,.0f} "
            f"{mib(r['mem'].peak_rss):>9.0f}  (minus idle Ray: {mib(r['mem'].peak_rss - r['idle_rss']):.0f}; "
            f"PSS {mib(r['mem'].peak_pss):.0f})"
        )
        print(
            f"{i + 1:<6} {'pandas':<9} {n:>12,} {b['seconds']:>9.2f} {n / b['seconds']:>11,.0f} "
            f"{b['peak_mib']:>9.0f}  (read {b['phases']['read']:.2f}, sort {b['phases']['sort']:.2f}, "
            f"merge_asof {b['phases']['merge_asof']:.2f}, restore order {b['phases']['restore order']:.2f} s)"
        )
        print(f"{i + 1:<6} {'ratio':<9} {'':>12} {r['seconds'] / b['seconds']:>9.2f}  raymlops/pandas time")
    best_r = min(r["seconds"] for r in ours_runs)
    best_b = min(b["seconds"] for b in bases)
    last = ours_runs[-1]
    print(
        f"best of {args.rounds}: raymlops {best_r:.2f} s ({n / best_r:,.0f} rows/s), pandas {best_b:.2f} s "
        f"({n / best_b:,.0f} rows/s); raymlops/pandas time ratio {best_r / best_b:.2f} (<1: raymlops faster)"
    )
    if args.address:
        print("peak MiB, raymlops: this driver only (the work runs on the cluster's nodes; not sampled there)")
    else:
        print(
            f"peak MiB, raymlops: sum of RSS over the driver and {last['mem'].procs_at_peak - 1} Ray processes "
            f"(GCS, raylet with the object store, agents, workers), sampled every {SAMPLE_S * 1000:.0f} ms; shared "
            f"object-store pages count once per process mapping them (PSS, every {SAMPLE_S * PSS_EVERY * 1000:.0f} "
            f"ms, splits them); idle Ray before the run: RSS {mib(last['idle_rss']):.0f} MiB, "
            f"PSS {mib(last['idle_pss']):.0f} MiB"
        )
    print("peak MiB, pandas: ru_maxrss of the one baseline process (a fresh subprocess per round)")
    print(
        f"raymlops: timed after an untimed warm-up retrieval ({WARM_ENTITIES:,} x {WARM_FEATURES:,} rows, "
        f"{warm_s:.1f} s) that started the Ray workers; includes entity upload, read, shuffle, merge and "
        f"collecting to pandas in input order; {where}"
    )
    print(
        f"load average (1 min) before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f} "
        f"(other work on this machine skews both sides)"
    )
    ok = not problems
    detail = problems[0] if problems else f"{agreed[0]}; every round"
    print(f"results agree: {'yes' if ok else 'no'} ({detail})")
    print(f"\ntotal runtime {time.perf_counter() - started:.1f} s")
    if args.summary:
        Path(args.summary).write_text(
            json.dumps(
                {
                    "entities": n,
                    "features": main_data["rows"],
                    "worker_nodes": len(workers),
                    "cpus": cpus,
                    "raymlops_s": [r["seconds"] for r in ours_runs],
                    "pandas_s": [b["seconds"] for b in bases],
                    "agree": ok,
                }
            )
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
