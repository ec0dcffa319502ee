"""The `raymlops` command: parses arguments, calls the public API, prints results."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time

from raymlops.errors import ConfigError, RaymlopsError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="raymlops", description="One YAML from raw data to a monitored endpoint, on Ray.")
    sub = p.add_subparsers(dest="cmd", required=True)

    def with_config(sp):
        sp.add_argument("config", help="pipeline YAML")
        sp.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override a config value (repeatable)")

    v = sub.add_parser("validate", help="check a config; prints OK or one error per line (exit 2)")
    with_config(v)
    sub.add_parser("schema", help="print the config's JSON Schema")

    r = sub.add_parser("run", help="run every step of a pipeline; deploys when it has 'serving'")
    with_config(r)
    r.add_argument("--address", help="Ray cluster address (default: start a local Ray)")
    r.add_argument("--probe", action="append", default=[], metavar="PATH",
                   help="after deploying, send this file's rows to /predict and print /drift; then exit")
    r.add_argument("--exit", action="store_true", help="exit after deploying instead of serving until Ctrl-C")
    r.add_argument("--quiet", action="store_true", help="hide Ray Tune's progress table")
    r.add_argument("--no-cache", action="store_true", help="run every step even if its inputs are unchanged")
    r.add_argument("--resume", action="store_true",
                   help="continue the newest interrupted run of this config (finished trials are kept)")

    s = sub.add_parser("serve", help="deploy an existing run")
    with_config(s)
    s.add_argument("--run", default=None, help="run id or directory (default: serving.model, else the latest run)")
    s.add_argument("--model", default=None, metavar="URI",
                   help="a registered model: models:/NAME@ALIAS (followed as the alias moves) or models:/NAME/VERSION")
    s.add_argument("--address")
    s.add_argument("--exit", action="store_true", help="exit after deploying")
    s.add_argument("--export", metavar="PATH", help="write a Serve config file (`serve deploy PATH`) instead of "
                                                   "deploying")

    sv = sub.add_parser("serving", help="a deployed app's traffic: status (weights, canary), compare (shadows)")
    svsub = sv.add_subparsers(dest="scmd", required=True)
    for name, text in (("status", "weights, canary step and history"),
                       ("compare", "per-variant traffic and shadow agreement, from the request log")):
        sp = svsub.add_parser(name, help=text)
        with_config(sp)
        sp.add_argument("--json", action="store_true", help="print JSON")

    ck = sub.add_parser("check", help="data-quality check of a batch against a run's training profile (exit 1 "
                                      "when it fails)")
    with_config(ck)
    ck.add_argument("--input", required=True, help="file or Parquet directory to check")
    ck.add_argument("--run", help="run id or directory (default: the config's latest run)")
    ck.add_argument("--format", choices=["parquet", "csv", "json"])
    ck.add_argument("--json", action="store_true", help="print JSON")
    dr = sub.add_parser("drift", help="offline drift: report")
    drsub = dr.add_subparsers(dest="dcmd", required=True)
    drr = drsub.add_parser("report", help="test a batch against a run's drift reference; write HTML (+JSON) or JSON")
    drr.add_argument("config", nargs="?", help="pipeline YAML (for its storage and latest run)")
    drr.add_argument("--run", help="run id or directory (default: the config's latest run)")
    drr.add_argument("--storage", help="storage holding the run (default: the config's, else ./.raymlops)")
    drr.add_argument("--current", required=True, help="the batch to test (file or Parquet directory)")
    drr.add_argument("--format", choices=["parquet", "csv", "json"])
    drr.add_argument("--out", required=True, help="report.html (writes report.json beside it) or report.json")
    mo = sub.add_parser("monitor", help="a deployed app's monitors: status (drift, quality, events, retraining)")
    mosub = mo.add_subparsers(dest="mcmd", required=True)
    mos = mosub.add_parser("status", help="latest results, events and retraining steps")
    with_config(mos)
    mos.add_argument("--json", action="store_true", help="print JSON")
    rt = sub.add_parser("retrain", help="train and register the new version as @challenger (the closed loop's job)")
    with_config(rt)
    rt.add_argument("--address")

    pr = sub.add_parser("predict", help="score a dataset in batch with a run's model (Ray Data)")
    with_config(pr)
    pr.add_argument("--run", required=True, help="run id or directory")
    pr.add_argument("--input", required=True, help="file, directory or glob to score")
    pr.add_argument("--output", required=True, help="Parquet output directory")
    pr.add_argument("--format", choices=["parquet", "csv", "json"], help="input format (default: from the name)")
    pr.add_argument("--actors", type=int, default=1, help="scoring actors")
    pr.add_argument("--address")

    f = sub.add_parser("features", help="feature views: build, materialize, list, describe, serve")
    fsub = f.add_subparsers(dest="fcmd", required=True)
    fb = fsub.add_parser("build", help="run the feature pipelines into the offline store (a new version each)")
    with_config(fb)
    fb.add_argument("--view", action="append", help="only this view (repeatable)")
    fb.add_argument("--start", help="backfill rows from this time (ISO 8601; naive = UTC)")
    fb.add_argument("--end", help="backfill rows before this time")
    fb.add_argument("--append", action="store_true", help="add the rows after the latest stored time")
    fb.add_argument("--address")
    fm = fsub.add_parser("materialize", help="load each entity's latest values into the online store")
    with_config(fm)
    fm.add_argument("--view", action="append")
    fm.add_argument("--start", help="window start (default: unbounded)")
    fm.add_argument("--end", help="window end, exclusive (default: now)")
    fm.add_argument("--incremental", action="store_true", help="start from the last materialization's end")
    fm.add_argument("--address")
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
    u.add_argument("--workers", type=int, default=1, help="server processes (default 1 for a local UI; MLflow's "
                                                          "own default is 4)")
    ts = sub.add_parser("tracking-server", help="start an MLflow tracking server whose artifacts live in storage "
                                                "(what a multi-node cluster's runs record to)")
    ts.add_argument("--storage", required=True, help="where artifacts go: s3://BUCKET/PREFIX, gs://..., or a path")
    ts.add_argument("--backend-store-uri", help="runs and registry database (default: sqlite file in "
                                                "~/.local/share/raymlops/tracking; a postgresql:// URI in production)")
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
    with_registry(mp)
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

    d = sub.add_parser("demo-data", help="write the quickstart's churn dataset")
    d.add_argument("out_dir")
    d.add_argument("--rows", type=int, default=20_000)
    d.add_argument("--seed", type=int, default=7)
    d.add_argument("--anchor", help="end of the transactions' time span (default: today, UTC)")
    return p


def _serve_forever(pipe) -> None:
    print("Serving; press Ctrl-C to stop.", flush=True)
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    try:
        while not stop["now"]:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    _stop_serving()


def _print_probe(path: str, got: dict) -> None:
    d = got["drift"]
    score = "n/a" if got["mean_score"] is None else f"{got['mean_score']:.3f}"
    print(f"probe {path}: {got['rows']} rows scored, mean score {score}")
    if d.get("enabled"):
        print(f"  drift: is_drift={d.get('is_drift')} after {d['windows_tested']} window(s) of {d['window']} rows")
        for name, f in sorted(d.get("features", {}).items(), key=lambda kv: kv[1]["p_value"]):
            flag = "DRIFT" if f["is_drift"] else "ok"
            print(f"    {name:<16} {f['test']:<4} stat={f['statistic']:.3f} p={f['p_value']:.2e} {flag}")


def _interrupt(*_args) -> None:
    raise KeyboardInterrupt


def _run(args) -> int:
    from raymlops import Pipeline

    pipe = Pipeline.from_yaml(args.config, args.overrides)
    # `ray job stop`, a container shutdown: stop like Ctrl-C, so the MLflow run is marked KILLED.
    signal.signal(signal.SIGTERM, _interrupt)
    if args.cmd == "serve" and args.export:
        print(pipe.export_serve_config(args.export, args.run, model=args.model))
        return 0
    local = pipe.connect(getattr(args, "address", None))
    if args.cmd == "serve":
        url = pipe.serve(args.run, model=args.model)
        print(url)
    else:
        result = pipe.run(progress=not args.quiet, no_cache=args.no_cache, resume=args.resume)
        print(json.dumps({"run_id": result.run_id, "run_dir": str(result.run_dir), "metrics": result.metrics,
                          "model": result.model, "endpoint": result.endpoint}, indent=2))
        if result.endpoint and args.probe:
            from raymlops.artifacts import load_model
            from raymlops.pipeline.probe import probe

            columns = load_model(result.run_dir).schema.names
            for path in args.probe:
                _print_probe(path, probe(result.endpoint, path, columns))
            if local:
                _stop_serving()
            return 0
        if not result.endpoint:
            return 0
    if local and not args.exit:
        _serve_forever(pipe)
    elif local:
        _stop_serving()
    return 0


def _stop_serving() -> None:
    """A graceful Serve shutdown before a local Ray goes down with this process: replicas flush their
    request logs (a hard exit would lose the last flush interval)."""
    from raymlops.serving import shutdown

    shutdown()


def _serving(args) -> int:
    from raymlops import Pipeline
    from raymlops.pipeline.serve import request_log_path, state_dir
    from raymlops.serving.compare import compare, format_compare, format_status
    from raymlops.serving.controller import read_events, read_state

    pipe = Pipeline.from_yaml(args.config, args.overrides, say=None)
    if pipe.config.serving is None:
        raise RaymlopsError("this config has no 'serving' section")
    if args.scmd == "status":
        where = state_dir(pipe.config, pipe.app_name)
        state, events = read_state(where), read_events(where)
        print(json.dumps({"state": state, "events": events}, indent=2) if args.json else format_status(state, events))
        return 0
    from raymlops.serving.request_log import read_log

    path = request_log_path(pipe.config, pipe.app_name)
    report = compare(read_log(path))
    print(json.dumps(report, indent=2) if args.json else f"request log: {path}\n" + format_compare(report))
    return 0


def _monitoring(args) -> int:
    from raymlops import Pipeline, load_config
    from raymlops.pipeline import monitor

    if args.cmd == "check":
        report = monitor.check_batch(load_config(args.config, args.overrides), args.input, args.run, fmt=args.format)
        print(json.dumps(report.to_dict(), indent=2, default=str) if args.json else report.format())
        return 0 if report.ok else 1
    if args.cmd == "drift":
        cfg = load_config(args.config) if args.config else None
        doc, paths = monitor.drift_report(cfg, args.run, args.current, args.out, args.storage, args.format)
        v = doc["verdict"]
        print(f"{'DRIFT' if v['is_drift'] else 'no drift'}: {v['n_drifted']} of {v['n_features']} features"
              + (f" ({', '.join(v['drifted'])})" if v["drifted"] else ""))
        for p in paths:
            print(f"wrote {p}")
        return 0
    pipe = Pipeline.from_yaml(args.config, args.overrides, say=None if args.cmd == "monitor" else _stderr)
    if args.cmd == "monitor":
        status = monitor.monitor_status(pipe.config, pipe.app_name)
        print(json.dumps(status, indent=2, default=str) if args.json else monitor.format_monitor_status(status))
        return 0
    pipe.connect(args.address)
    result = pipe.train(progress=False, register_as="challenger")
    m = result.model or {}
    print(f"challenger: models:/{m.get('name')}/{m.get('version')} (run {result.run_id}, gate "
          f"{'passed' if m.get('passed') else 'failed'})", flush=True)
    return 0


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _features(args) -> int:
    from raymlops import FeatureStore

    store = FeatureStore.from_yaml(args.config, args.overrides)
    if args.fcmd == "list":
        for v in store.list_views():
            print(f"{v['name']:<20} entity={v['entity']} keys={','.join(v['join_keys'])} ttl={v['ttl'] or '-'} "
                  f"features={len(v['features'])} offline_version={v['offline_version'] or '-'} "
                  f"rows={v['offline_rows']}")
        return 0
    if args.fcmd == "describe":
        print(json.dumps(store.describe(args.view), indent=2, default=str))
        return 0
    local = store.connect(args.address)
    from raymlops.pipeline.cluster import check_cluster

    check_cluster(store.config, online=args.fcmd != "build")
    if args.fcmd == "build":
        from raymlops.pipeline.steps import build_and_record

        out = build_and_record(store.config, store, args.view, start=args.start, end=args.end, append=args.append)
        for view, m in out.items():
            print(f"{view}: version {m['version']} ({m['mode']}), {m['written_rows']} rows written, "
                  f"{sum(f['rows'] for f in m['files'])} rows in the view")
        return 0
    if args.fcmd == "materialize":
        out = store.materialize(start=args.start, end=args.end, incremental=args.incremental, views=args.view)
        for view, run in out.items():
            print(f"{view}: {run['entities']} entities written for [{run['start'] or '-inf'}, {run['end']}) "
                  f"from offline version {run['offline_version']}")
        return 0
    from raymlops.features.server import deploy_feature_server

    url = deploy_feature_server(store.portable_config(), store.features.server, f"{store.config.name}-features")
    print(f"{url}/online")
    if local and not args.exit:
        _serve_forever(None)
    return 0


def _registry_location(args) -> tuple[str, str]:
    """(tracking URI, storage) from --tracking-uri / --config / --storage / the environment."""
    from raymlops.registry import tracking_uri

    reg_cfg, storage = None, args.storage
    if args.config:
        from raymlops.config import load_config

        cfg = load_config(args.config)
        reg_cfg, storage = cfg.registry, storage or cfg.storage
    storage = storage or os.environ.get("RAYMLOPS_STORAGE") or "./.raymlops"
    if args.tracking_uri:
        return args.tracking_uri, storage
    return tracking_uri(reg_cfg, storage), storage


def _models(args) -> int:
    from raymlops.registry import ModelRegistry

    uri, _ = _registry_location(args)
    reg = ModelRegistry(uri)
    if args.mcmd == "list":
        models = reg.list(args.name)
        if not models:
            print(f"no registered models in {uri}")
        for m in models:
            print(f"{m['name']}  aliases: " + (", ".join(f"@{a}=v{v}" for a, v in sorted(m["aliases"].items())) or "-"))
            for v in m["versions"]:
                metrics = ", ".join(f"{k}={x:.4f}" for k, x in sorted(v["metrics"].items()))
                tags = " ".join(f"@{a}" for a in v["aliases"])
                print(f"  v{v['version']:<4} {v['created']}  run {v['run']}  {metrics}  {tags}".rstrip())
        return 0
    if args.mcmd == "promote":
        e = reg.promote(args.name, args.version, args.alias, force=args.force)
        print(f"{args.name}: @{e['alias']} -> version {e['version']} (was {e['previous'] or '-'})"
              + (" FORCED past a failed gate" if e["forced"] else ""))
        for line in e["gate"]:
            print(f"  {line}")
        return 0
    for e in reg.history(args.name):
        print(f"{e['at']}  @{e['alias']}: {e['previous'] or '-'} -> {e['version']}  {e['reason']}"
              + ("  [forced]" if e["forced"] else "") + f"  by {e['by']}")
    return 0


def _ui(args) -> int:
    from raymlops.registry.tracking import artifact_root

    uri, _ = _registry_location(args)
    if uri.startswith(("http://", "https://")):
        raise RaymlopsError(f"{uri} is a tracking server: open its own UI in a browser; `raymlops ui` serves a "
                            "local store")
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", args.host,
           "--port", str(args.port), "--workers", str(args.workers)]
    if artifact_root(uri):
        cmd += ["--default-artifact-root", artifact_root(uri)]
    print(f"MLflow UI on http://{args.host}:{args.port} for {uri}", flush=True)
    os.execv(sys.executable, cmd)
    return 0


def _reproduce(args) -> int:
    from raymlops.pipeline.reproduce import reproduce

    got = reproduce(args.run, args.storage, lambda m: print(f"[raymlops] {m}", file=sys.stderr, flush=True),
                    args.address)
    ok = got["metrics_match"] and got["model_bytes_match"]
    print(json.dumps(got, indent=2))
    print(f"run {got['run']} reproduced as {got['reproduction']}: metrics "
          f"{'match' if got['metrics_match'] else 'DIFFER'}, model bytes "
          f"{'match' if got['model_bytes_match'] else 'DIFFER'}")
    return 0 if ok else 1


def _lineage(args) -> int:
    from raymlops.registry.lineage import format_lineage, lineage
    from raymlops.registry.models import registry_cache

    uri, _ = _registry_location(args)
    d = lineage(args.uri, uri, registry_cache())  # this machine's copies, as serving and load_model use
    print(json.dumps(d, indent=2, default=str) if args.json else format_lineage(d))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        _fetch_config(args)
        return _dispatch(args)
    except ConfigError as e:
        for issue in e.issues:
            print(issue, file=sys.stderr)
        return 2
    except RaymlopsError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # never a bare traceback: one line, the traceback in a log file
        if type(e).__name__ == "MlflowException":
            print(f"error: MLflow: {str(e)[:1000]}", file=sys.stderr)
            return 1
        print(f"error: unexpected {type(e).__name__}: {str(e).splitlines()[0][:500] if str(e) else ''} "
              f"(traceback in {_log_traceback(args)})", file=sys.stderr)
        return 1


def _log_traceback(args) -> str:
    """Writes the current exception's traceback to a log file under this machine's cache; returns its path."""
    import traceback

    from raymlops.storage.staging import cache_root

    d = cache_root() / "logs"
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"raymlops-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    path.write_text(f"raymlops {' '.join(sys.argv[1:])}\n\n{traceback.format_exc()}")
    return str(path)


def _fetch_config(args) -> None:
    """A CONFIG given as a URI (the retrain job's resolved config in object storage) is read through the
    storage layer into a local file first."""
    cfg = getattr(args, "config", None)
    if isinstance(cfg, str) and "://" in cfg and not cfg.startswith("file://"):
        import tempfile

        from raymlops.storage.files import read_file

        fd, local = tempfile.mkstemp(prefix="raymlops-config-", suffix=".yaml")
        with os.fdopen(fd, "wb") as f:
            f.write(read_file(cfg))
        args.config = local


def _dispatch(args) -> int:
    if args.cmd == "validate":
        from raymlops.config import load_config

        load_config(args.config, args.overrides)
        print("OK")
        return 0
    if args.cmd == "schema":
        from raymlops.config import json_schema

        print(json.dumps(json_schema(), indent=2))
        return 0
    if args.cmd == "demo-data":
        from raymlops.data.demo import write_demo_data

        for name, path in write_demo_data(args.out_dir, args.rows, args.seed, args.anchor).items():
            print(f"{name}: {path}")
        return 0
    if args.cmd == "features":
        return _features(args)
    if args.cmd == "serving":
        return _serving(args)
    if args.cmd == "models":
        return _models(args)
    if args.cmd == "ui":
        return _ui(args)
    if args.cmd == "tracking-server":
        from raymlops.pipeline.cluster import tracking_server_command

        cmd, env, url = tracking_server_command(args.storage, args.backend_store_uri, args.host, args.port,
                                                args.workers)
        print(f"MLflow tracking server on {url} (artifacts in {args.storage}); set MLFLOW_TRACKING_URI={url}",
              flush=True)
        os.execve(cmd[0], cmd, env)
    if args.cmd == "reproduce":
        return _reproduce(args)
    if args.cmd == "lineage":
        return _lineage(args)
    if args.cmd in ("check", "drift", "monitor", "retrain"):
        return _monitoring(args)
    if args.cmd == "predict":
        from raymlops import load_config
        from raymlops.pipeline import Pipeline
        from raymlops.pipeline.predict import score

        cfg = load_config(args.config, args.overrides)
        Pipeline(cfg).connect(args.address)
        n = score(args.run, args.input, args.output, storage=cfg.storage, fmt=args.format, actors=args.actors)
        print(f"wrote {n} rows to {args.output}")
        return 0
    return _run(args)


if __name__ == "__main__":
    sys.exit(main())
