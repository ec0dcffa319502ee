"""The `raymlops` command line: every command, argument and help text."""

from __future__ import annotations

import argparse


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="raymlops", description="One YAML from raw data to a monitored endpoint, on Ray.")
    sub = p.add_subparsers(dest="cmd", required=True)

    def with_config(sp):
        sp.add_argument("config", help="pipeline YAML")
        sp.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="KEY.PATH=VALUE",
            help="override a config value (repeatable)",
        )

    v = sub.add_parser("validate", help="check a config; prints OK or one error per line (exit 2)")
    with_config(v)
    sc = sub.add_parser("schema", help="print the config's JSON Schema (or its Markdown reference)")
    sc.add_argument(
        "--markdown",
        action="store_true",
        help="print the Markdown reference of every section and key instead (docs/config-reference.md)",
    )

    r = sub.add_parser("run", help="run every step of a pipeline; deploys when it has 'serving'")
    with_config(r)
    r.add_argument("--address", help="Ray cluster address (default: start a local Ray)")
    r.add_argument(
        "--probe",
        action="append",
        default=[],
        metavar="PATH",
        help="after deploying, send this file's rows to /predict and print /drift; then exit",
    )
    r.add_argument("--exit", action="store_true", help="exit after deploying instead of serving until Ctrl-C")
    r.add_argument(
        "--quiet", action="store_true", help="print results only (and warnings): no progress lines or tables"
    )
    r.add_argument("--no-cache", action="store_true", help="run every step even if its inputs are unchanged")
    r.add_argument(
        "--resume",
        action="store_true",
        help="continue the newest interrupted run of this config (finished trials are kept)",
    )

    s = sub.add_parser("serve", help="deploy an existing run")
    with_config(s)
    s.add_argument("--run", default=None, help="run id or directory (default: serving.model, else the latest run)")
    s.add_argument(
        "--model",
        default=None,
        metavar="URI",
        help="a registered model: models:/NAME@ALIAS (followed as the alias moves) or models:/NAME/VERSION",
    )
    s.add_argument("--address")
    s.add_argument("--exit", action="store_true", help="exit after deploying")
    s.add_argument(
        "--export", metavar="PATH", help="write a Serve config file (`serve deploy PATH`) instead of deploying"
    )

    sv = sub.add_parser(
        "serving",
        help="a deployed app's traffic: status (weights, canary), compare (shadows), canary pause|resume|rollback",
    )
    svsub = sv.add_subparsers(dest="scmd", required=True)
    for name, text in (
        ("status", "weights, canary step and history"),
        ("compare", "per-variant traffic and shadow agreement, from the request log"),
    ):
        sp = svsub.add_parser(name, help=text)
        with_config(sp)
        sp.add_argument("--json", action="store_true", help="print JSON")
    sc = svsub.add_parser(
        "canary",
        help="pause, resume or roll back the canary (applied by the app's traffic "
        "controller within a second, recorded in the canary history)",
    )
    with_config(sc)
    sc.add_argument("action", choices=["pause", "resume", "rollback"])
    sc.add_argument("--reason", help="why (recorded)")
    sc.add_argument("--by", help="who (default: the OS user)")

    ck = sub.add_parser(
        "check", help="data-quality check of a batch against a run's training profile (exit 1 when it fails)"
    )
    with_config(ck)
    ck.add_argument("--input", required=True, help="file or Parquet directory to check")
    ck.add_argument("--run", help="run id or directory (default: the config's latest run)")
    ck.add_argument(
        "--format", choices=["parquet", "csv", "json"], help="default: from the extension, else the content"
    )
    ck.add_argument("--json", action="store_true", help="print JSON")
    dr = sub.add_parser("drift", help="offline drift: report")
    drsub = dr.add_subparsers(dest="dcmd", required=True)
    drr = drsub.add_parser("report", help="test a batch against a run's drift reference; write HTML (+JSON) or JSON")
    drr.add_argument("config", nargs="?", help="pipeline YAML (for its storage and latest run)")
    drr.add_argument("--run", help="run id or directory (default: the config's latest run)")
    drr.add_argument("--storage", help="storage holding the run (default: the config's, else ./.raymlops)")
    drr.add_argument("--current", required=True, help="the batch to test (file or Parquet directory)")
    drr.add_argument(
        "--format", choices=["parquet", "csv", "json"], help="default: from the extension, else the content"
    )
    drr.add_argument("--out", required=True, help="report.html (writes report.json beside it) or report.json")
    mo = sub.add_parser("monitor", help="a deployed app's monitors: status (drift, quality, events, retraining)")
    mosub = mo.add_subparsers(dest="mcmd", required=True)
    mos = mosub.add_parser("status", help="latest results, events and retraining steps")
    with_config(mos)
    mos.add_argument("--json", action="store_true", help="print JSON")
    rt = sub.add_parser("retrain", help="train and register the new version as @challenger (the closed loop's job)")
    with_config(rt)
    rt.add_argument("--address")
    rt.add_argument(
        "--result", help="also write the challenger as a JSON record here (a path or URI): the app monitor reads it"
    )

    pr = sub.add_parser("predict", help="score a dataset in batch with a run's model (Ray Data)")
    with_config(pr)
    pr.add_argument("--run", help="run id or directory (default: the config's latest run)")
    pr.add_argument("--input", required=True, help="file, directory or glob to score")
    pr.add_argument("--output", required=True, help="Parquet output directory")
    pr.add_argument(
        "--format",
        choices=["parquet", "csv", "json"],
        help="input format (default: from the extension, else the content)",
    )
    pr.add_argument(
        "--output-columns",
        action="append",
        metavar="OUTPUT=NAME[,...]",
        help="name the outputs (prediction, probability, model_version); an output never overwrites an input column",
    )
    pr.add_argument("--output-prefix", metavar="PREFIX", help="prefix every output column's name")
    pr.add_argument("--actors", type=int, default=1, help="scoring tasks at once (each process loads the model once)")
    pr.add_argument("--address")

    f = sub.add_parser("features", help="feature views: build, materialize, push, list, describe, serve, skew")
    fsub = f.add_subparsers(dest="fcmd", required=True)
    fb = fsub.add_parser("build", help="run the feature pipelines into the offline store (a new version each)")
    with_config(fb)
    fb.add_argument("--view", action="append", help="only this view (repeatable)")
    fb.add_argument("--start", help="backfill rows from this time (ISO 8601; naive = UTC)")
    fb.add_argument("--end", help="backfill rows before this time")
    fb.add_argument("--append", action="store_true", help="add the rows after the latest built time")
    fb.add_argument("--drop-pushed", action="store_true", help="also drop pushed events (once the source has them)")
    fb.add_argument("--address")
    fm = fsub.add_parser("materialize", help="load each entity's latest values into the online store")
    with_config(fm)
    fm.add_argument("--view", action="append")
    fm.add_argument("--start", help="window start (default: unbounded)")
    fm.add_argument("--end", help="window end, exclusive (default: now)")
    fm.add_argument("--incremental", action="store_true", help="start from the last materialization's end")
    fm.add_argument("--address")
    fp = fsub.add_parser("push", help="write new events of a view: offline and online at once")
    with_config(fp)
    fp.add_argument("view")
    fp.add_argument("rows", help="a file of events (Parquet, CSV or JSON lines) with every stored column")
    fsk = fsub.add_parser("skew", help="served feature values (request log) against the offline store")
    with_config(fsk)
    fsk.add_argument("--app", help="Serve application (default: the config's)")
    fsk.add_argument("--since", help="only requests from this time (ISO 8601; naive = UTC)")
    fsk.add_argument("--until", help="only requests before this time")
    fsk.add_argument("--sample", type=int, default=1000, help="rows compared, drawn at random (default 1000)")
    fsk.add_argument("--tolerance", type=float, default=1e-6, help="relative difference that still matches")
    fsk.add_argument("--json", action="store_true", help="print the report as JSON")
    fsk.add_argument("--address")
    fe = fsub.add_parser(
        "export",
        help="a view's offline version as a Spark-readable table: Hive-partitioned Parquet or Delta Lake, by date",
    )
    with_config(fe)
    fe.add_argument("view")
    fe.add_argument("--out", required=True, help="a new directory or URI (delta: a Delta table, new or existing)")
    fe.add_argument("--format", choices=["parquet", "delta"], default="parquet")
    fe.add_argument("--version", type=int, help="offline version (default: the latest)")
    fl = fsub.add_parser("list", help="the declared views with their offline versions")
    with_config(fl)
    fd = fsub.add_parser("describe", help="one view: schema, entity, ttl, source, versions, freshness")
    with_config(fd)
    fd.add_argument("view")
    fs_ = fsub.add_parser("serve", help="deploy the feature server (POST <prefix>/online)")
    with_config(fs_)
    fs_.add_argument("--address")
    fs_.add_argument("--exit", action="store_true", help="exit after deploying")

    def with_registry(sp):
        sp.add_argument("--config", help="pipeline YAML whose registry section (and storage) to use")
        sp.add_argument("--storage", help="storage holding the embedded store (default ./.raymlops)")
        sp.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else embedded)")

    u = sub.add_parser("ui", help="start the MLflow UI on the tracking store")
    with_registry(u)
    u.add_argument("--host", default="127.0.0.1")
    u.add_argument("--port", type=int, default=5000)
    u.add_argument(
        "--workers", type=int, default=1, help="server processes (default 1 for a local UI; MLflow's own default is 4)"
    )
    ts = sub.add_parser(
        "tracking-server",
        help="start an MLflow tracking server whose artifacts live in storage "
        "(what a multi-node cluster's runs record to)",
    )
    ts.add_argument("--storage", required=True, help="where artifacts go: s3://BUCKET/PREFIX, gs://..., or a path")
    ts.add_argument(
        "--backend-store-uri",
        help="runs and registry database (default: sqlite file in "
        "~/.local/share/raymlops/tracking; a postgresql:// URI in production)",
    )
    ts.add_argument("--host", default="127.0.0.1", help="bind address (0.0.0.0 to serve the cluster's nodes)")
    ts.add_argument("--port", type=int, default=5000)
    ts.add_argument("--workers", type=int, default=1)
    m = sub.add_parser("models", help="registered models: list, promote, history")
    msub = m.add_subparsers(dest="mcmd", required=True)
    ml = msub.add_parser("list", help="registered models with versions, aliases and metrics")
    ml.add_argument("name", nargs="?")
    with_registry(ml)
    mp = msub.add_parser("promote", help="move an alias to a version (its promotion gate is enforced)")
    mp.add_argument("name")
    mp.add_argument("version", type=int)
    mp.add_argument("--alias", default="champion")
    mp.add_argument("--force", action="store_true", help="promote even if the gate fails (recorded in history)")
    mp.add_argument("--by", help="who promotes, for the history (default: the OS user)")
    with_registry(mp)
    mp.add_argument("--reason", help="why (recorded in the alias history; say it when forcing)")
    mr = msub.add_parser("rollback", help="move an alias back to the version it held before its latest move")
    mr.add_argument("name")
    mr.add_argument("--alias", default="champion")
    mr.add_argument("--reason", help="why (recorded in the alias history)")
    mr.add_argument("--by", help="who rolls back, for the history (default: the OS user)")
    with_registry(mr)
    co = sub.add_parser("console", help="the web console: runs, models, features, datasets, deployments, monitoring")
    co.add_argument(
        "--config",
        action="append",
        default=[],
        help="a pipeline YAML (repeatable): its storage, tracking store, feature views and apps",
    )
    co.add_argument("--storage", help="storage to read (default: the first config's, $RAYMLOPS_STORAGE or ./.raymlops)")
    co.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else embedded)")
    co.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    co.add_argument("--port", type=int, default=8080)
    co.add_argument("--read-only", action="store_true", help="hide promote and rollback")
    co.add_argument("--mlflow-ui", help="URL of an MLflow UI on the same tracking store, for links to runs")
    mh = msub.add_parser("history", help="every alias move of a model")
    mh.add_argument("name")
    with_registry(mh)
    rp = sub.add_parser("reproduce", help="re-run a run from its recorded config; compare metrics and model bytes")
    rp.add_argument("run", help="run id or directory")
    rp.add_argument("--storage", help="storage holding the run (default: $RAYMLOPS_STORAGE or ./.raymlops)")
    rp.add_argument("--address")
    ln = sub.add_parser("lineage", help="model version -> run -> config -> sources and feature views")
    ln.add_argument("uri", help="models:/NAME/VERSION or models:/NAME@ALIAS")
    ln.add_argument("--json", action="store_true", help="print JSON")
    with_registry(ln)

    ex = sub.add_parser(
        "explore",
        help="profile a dataset of any size in one distributed pass (sketches); HTML + "
        "JSON report; --compare tests another dataset against it for drift",
    )
    ex.add_argument("data", help="a source name of --config, or a file, directory or URI")
    ex.add_argument("--config", help="pipeline YAML (its sources and Ray settings)")
    ex.add_argument("--label", help="label column: its distribution and each feature's association with it")
    ex.add_argument("--time", help="time column (default: the source's timestamp, else the first timestamp column)")
    ex.add_argument("--compare", help="another source or path, compared with DATA as the reference")
    ex.add_argument("--out", help="report.html (writes report.json beside it); default: print a summary")
    ex.add_argument("--json", action="store_true", help="print the profile as JSON")
    ex.add_argument("--address", help="Ray address (default: the config's, else a local Ray)")

    k8 = sub.add_parser("k8s", help="Kubernetes: KubeRay manifests (RayJob, RayService, retrain RayJob)")
    k8sub = k8.add_subparsers(dest="kcmd", required=True)
    kr = k8sub.add_parser(
        "render",
        help="write KubeRay v1 manifests for a config (checked against KubeRay's field structure; not applied)",
    )
    kr.add_argument("config", help="pipeline YAML, as the image holds it (relative to the image's /app)")
    kr.add_argument("--image", required=True, help="the raymlops image (docker/Dockerfile), e.g. registry/raymlops:1")
    kr.add_argument("--namespace", default="default")
    kr.add_argument("--out", default="k8s", help="folder for the manifests (default: ./k8s)")
    kr.add_argument(
        "--secret",
        default="raymlops-env",
        help="Secret holding RAYMLOPS_STORAGE, MLFLOW_TRACKING_URI and cloud credentials (default: raymlops-env)",
    )
    kr.add_argument("--worker-cpus", type=int, default=4, help="CPUs per Ray worker pod (default 4)")
    kr.add_argument("--deadline-s", type=int, default=86_400, help="the pipeline RayJob's activeDeadlineSeconds")
    kr.add_argument(
        "--no-service",
        action="store_true",
        help="skip the RayService (it needs a trained model: its Serve config is `serve --export`'s)",
    )
    kr.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")

    d = sub.add_parser("demo-data", help="write the quickstart's churn dataset")
    d.add_argument("out_dir")
    d.add_argument("--rows", type=int, default=20_000)
    d.add_argument("--seed", type=int, default=7)
    d.add_argument("--anchor", help="end of the transactions' time span (default: today, UTC)")
    return p
