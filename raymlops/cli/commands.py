"""The commands behind `raymlops`: each parses nothing, calls the public API and prints results."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import sys
import time
from pathlib import Path

from raymlops.errors import RaymlopsError, SetupError


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
        num = lambda v, spec: "n/a" if v is None else format(v, spec)  # noqa: E731
        order = lambda kv: (kv[1].get("p_value") is None, kv[1].get("p_value") or 0.0)  # noqa: E731
        for name, f in sorted(d.get("features", {}).items(), key=order):
            flag = "DRIFT" if f["is_drift"] else "significant, small effect" if f.get("significant") else "ok"
            limit = f.get("effect_threshold", f.get("min_effect"))
            print(
                f"    {name:<16} {f['test']:<4} stat={num(f.get('statistic'), '.3f')} "
                f"p={num(f.get('p_value'), '.2e')} (threshold {num(f.get('threshold'), '.2e')}) "
                f"effect={num(f.get('effect'), '.3f')}"
                + (f" (threshold {limit:.3f})" if limit is not None else "")
                + f" {flag}"
            )


def _run(args) -> int:
    from raymlops import Pipeline

    quiet = getattr(args, "quiet", False)
    pipe = Pipeline.from_yaml(args.config, args.overrides, **({"say": _warnings_only} if quiet else {}))
    if args.cmd == "serve" and args.export:
        print(pipe.export_serve_config(args.export, args.run, model=args.model))
        return 0
    if args.cmd == "run":
        pipe.check_inputs()  # before Ray starts: a wrong path or a corrupt file fails in a second
    local = pipe.connect(getattr(args, "address", None))
    if args.cmd == "serve":
        url = pipe.serve(args.run, model=args.model)
        print(url)
    else:
        result = pipe.run(progress=not args.quiet, no_cache=args.no_cache, resume=args.resume)
        ev = result.evaluation or {}
        # metrics: the best trial's, at 0.5 (how trials are compared); holdout: the model's, at its threshold
        holdout = {**ev.get("candidate", {}), **({"threshold": ev["threshold"]} if "threshold" in ev else {})}
        print(
            json.dumps(
                {
                    "run_id": result.run_id,
                    "run_dir": str(result.run_dir),
                    "metrics": result.metrics,
                    **({"holdout": holdout} if holdout else {}),
                    "model": result.model,
                    "endpoint": result.endpoint,
                },
                indent=2,
            )
        )
        if result.endpoint and args.probe:
            from raymlops.pipeline.probe import probe
            from raymlops.registry import load_model

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
    """A graceful stop of every app before a local Ray goes down with this process: replicas flush their
    request logs (a hard exit would lose the last flush interval)."""
    from raymlops.serving import delete_apps

    delete_apps()


def _serving(args) -> int:
    from raymlops import Pipeline
    from raymlops.pipeline.serve import request_log_path, state_dir
    from raymlops.serving.compare import compare, format_compare, format_status
    from raymlops.serving.controller import read_events, read_state

    pipe = Pipeline.from_yaml(args.config, args.overrides, say=None)
    if pipe.config.serving is None:
        raise RaymlopsError("this config has no 'serving' section")
    if args.scmd == "canary":
        import getpass

        from raymlops.serving.controller import request_action

        where = state_dir(pipe.config, pipe.app_name)
        if not ((read_state(where) or {}).get("state") or {}).get("canary"):
            raise RaymlopsError(f"app {pipe.app_name!r} has no canary (no serving state at {where})")
        r = request_action(where, args.action, args.by or getpass.getuser(), args.reason)
        print(
            f"{args.action} of {pipe.app_name}'s canary requested (id {r['id']}); the traffic controller applies it "
            f"within a second while the app runs: `raymlops serving status {args.config}` shows it"
        )
        return 0
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
        print(
            f"{'DRIFT' if v['is_drift'] else 'no drift'}: {v['n_drifted']} of {v['n_features']} features"
            + (f" ({', '.join(v['drifted'])})" if v["drifted"] else "")
        )
        for p in paths:
            print(f"wrote {p}")
        return 0
    pipe = Pipeline.from_yaml(args.config, args.overrides, say=None if args.cmd == "monitor" else _stderr)
    if args.cmd == "monitor":
        status = monitor.monitor_status(pipe.config, pipe.app_name)
        print(json.dumps(status, indent=2, default=str) if args.json else monitor.format_monitor_status(status))
        return 0
    pipe.check_inputs()
    pipe.connect(args.address)
    result = pipe.train(progress=False, register_as="challenger")
    m = result.model or {}
    print(
        f"challenger: models:/{m.get('name')}/{m.get('version')} (run {result.run_id}, gate "
        f"{'passed' if m.get('passed') else 'failed'})",
        flush=True,
    )
    if args.result:
        from raymlops.pipeline.loop import write_result

        write_result(args.result, result)
    return 0


def _predict(args) -> int:
    from raymlops import load_config
    from raymlops.pipeline import Pipeline
    from raymlops.pipeline.predict import output_names, plan, score

    cfg = load_config(args.config, args.overrides)
    checked = plan(
        args.run,
        args.input,
        cfg.storage,
        args.format,
        output_names(args.output_columns, args.output_prefix),
        pipeline=cfg.name,
    )  # before Ray starts: a bad input fails in a second, not after start-up
    Pipeline(cfg).connect(args.address)
    n = score(checked, args.output, actors=args.actors)
    print(f"wrote {n} rows to {args.output}")
    return 0


def _explore(args) -> int:
    from raymlops.explore import explore

    if args.address:
        os.environ["RAY_ADDRESS"] = args.address
    profile = explore(args.data, label=args.label, time=args.time, compare=args.compare, config=args.config)
    if args.out:
        for path in profile.save(args.out):
            print(f"wrote {path}")
    if args.json:
        print(profile.to_json())
    elif not args.out:
        print(_explore_summary(profile.to_dict()))
    return 0


def _k8s(args) -> int:
    import tempfile

    import yaml

    from raymlops import load_config
    from raymlops.pipeline import Pipeline
    from raymlops.pipeline.k8s import WORKDIR, ManifestError, render
    from raymlops.storage import open_storage

    cfg = load_config(args.config, args.overrides)
    serve_config = None
    if cfg.serving is not None and not args.no_service:  # the Serve config `serve --export` writes, as is
        store = open_storage(cfg)
        if store.local:
            raise ManifestError(
                f"the RayService's Serve config names runs and state in storage, which the pods "
                f"must reach: got local storage {store.url()}. Render with the cluster's "
                "RAYMLOPS_STORAGE (an object store URI) and MLFLOW_TRACKING_URI, or pass --no-service"
            )
        with tempfile.TemporaryDirectory() as tmp:
            exported = Pipeline(cfg).export_serve_config(Path(tmp) / "serve.yaml", workdir=WORKDIR)
            serve_config = yaml.safe_load(exported.read_text())
    for path in render(
        cfg,
        args.config,
        args.image,
        args.out,
        args.namespace,
        args.secret,
        args.worker_cpus,
        args.deadline_s,
        serve_config,
        args.overrides,
    ):
        print(f"wrote {path}")
    return 0


def _explore_summary(p: dict) -> str:
    lines = [f"{p['name']}: {p['rows']:,} rows, {len(p['columns'])} columns ({p['seconds']:.1f} s)"]
    for name, c in p["columns"].items():
        lines.append(f"  {name:<24} {c['kind']:<12} missing {c['null_share']:6.1%}  distinct {c['distinct']:>10,}")
    lines += [f"warning: {w['message']}" for w in p["warnings"]]
    cmp = p.get("comparison")
    if cmp:
        lines.append(
            f"compared with {cmp['current']}: "
            + (f"drift in {', '.join(cmp['drifted'])}" if cmp["is_drift"] else "no column drifted")
        )
    return "\n".join(lines)


def _warnings_only(msg: str) -> None:
    """``--quiet``: results on stdout, and of the progress lines only the warnings."""
    if msg.startswith("warning"):
        _stderr(f"[raymlops] {msg}")


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _features(args) -> int:
    from raymlops import FeatureStore

    store = FeatureStore.from_yaml(args.config, args.overrides)
    if args.fcmd == "list":
        for v in store.list_views():
            print(
                f"{v['name']:<20} entity={v['entity']} keys={','.join(v['join_keys'])} ttl={v['ttl'] or '-'} "
                f"features={len(v['features'])} offline_version={v['offline_version'] or '-'} "
                f"rows={v['offline_rows']}"
            )
        return 0
    if args.fcmd == "describe":
        print(json.dumps(store.describe(args.view), indent=2, default=str))
        return 0
    if args.fcmd == "export":
        got = store.export(args.view, args.out, args.format, args.version)
        print(
            f"{got['view']}: offline version {got['version']} written to {got['path']} as {got['format']} "
            f"({got['rows']} rows, partitioned by date)"
        )
        return 0
    if args.fcmd == "push":
        from raymlops.data.reader import read_frame

        out = store.push(args.view, read_frame(args.rows))
        print(
            f"{out['view']}: {out['rows']} events pushed (offline version {out['offline_version']}; online: "
            f"{out['entities']} entities, {out['tiles']} tiles)"
        )
        return 0
    local = store.connect(args.address)
    from raymlops.pipeline.cluster import check_cluster

    check_cluster(store.config, online=args.fcmd != "build")
    if args.fcmd == "build":
        from raymlops.pipeline.steps import build_and_record

        out = build_and_record(
            store.config,
            store,
            args.view,
            start=args.start,
            end=args.end,
            append=args.append,
            drop_pushed=args.drop_pushed,
        )
        for view, m in out.items():
            print(
                f"{view}: version {m['version']} ({m['mode']}), {m['written_rows']} rows written, "
                f"{sum(f['rows'] for f in m['files'])} rows in the view"
            )
        return 0
    if args.fcmd == "materialize":
        out = store.materialize(start=args.start, end=args.end, incremental=args.incremental, views=args.view)
        for view, run in out.items():
            tiles = f", {run['tiles']} window tiles" if "tiles" in run else ""
            print(
                f"{view}: {run['entities']} entities written{tiles} for [{run['start'] or '-inf'}, {run['end']}) "
                f"from offline version {run['offline_version']}"
            )
        return 0
    if args.fcmd == "skew":
        from raymlops.pipeline.skew import format_skew, skew_report

        report = skew_report(store.config, args.app, args.since, args.until, args.sample, args.tolerance)
        print(json.dumps(report, indent=2, default=str) if args.json else format_skew(report))
        return 0
    from raymlops.serving.deploy import deploy_feature_server

    url = deploy_feature_server(store.portable_config(), store.features.server, f"{store.config.name}-features")
    print(f"{url}/online")
    if local and not args.exit:
        _serve_forever(None)
    return 0


def _registry_location(args) -> tuple[str, str]:
    """(tracking URI, storage) from --tracking-uri / --config / --storage / the environment.

    An embedded store that does not exist is an error naming where it was looked for: reading commands
    never create an empty ``mlflow.db`` (MLflow would, on first connect)."""
    from raymlops.registry import tracking_uri

    reg_cfg, storage, origin = None, args.storage, "--storage"
    if args.config:
        from raymlops.config import load_config

        cfg = load_config(args.config)
        reg_cfg, storage = cfg.registry, storage or cfg.storage
        origin = "--storage" if args.storage else f"{args.config}'s storage"
    if not storage:
        storage, origin = (
            (os.environ.get("RAYMLOPS_STORAGE"), "$RAYMLOPS_STORAGE")
            if os.environ.get("RAYMLOPS_STORAGE")
            else ("./.raymlops", "the default storage")
        )
    if args.tracking_uri:
        return args.tracking_uri, storage
    uri = tracking_uri(reg_cfg, storage, create=False)
    db = uri.removeprefix("sqlite:///") if uri.startswith("sqlite:///") else None
    if db and not os.path.isfile(db):
        raise SetupError(
            f"no MLflow store at {db} ({origin}); pass the pipeline's config (--config CFG), "
            "--storage or --tracking-uri"
        )
    return uri, storage


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
    if args.mcmd == "rollback":
        e = reg.rollback(args.name, args.alias, by=args.by, reason=args.reason)
        print(f"{args.name}: @{e['alias']} -> version {e['version']} (was {e['previous']}): {e['reason']}")
        return 0
    if args.mcmd == "promote":
        e = reg.promote(args.name, args.version, args.alias, force=args.force, by=args.by, reason=args.reason)
        print(
            f"{args.name}: @{e['alias']} -> version {e['version']} (was {e['previous'] or '-'})"
            + (" FORCED past a failed gate" if e["forced"] else "")
        )
        for line in e["gate"]:
            print(f"  {line}")
        return 0
    for e in reg.history(args.name):
        print(
            f"{e['at']}  @{e['alias']}: {e['previous'] or '-'} -> {e['version']}  {e['reason']}"
            + ("  [forced]" if e["forced"] else "")
            + f"  by {e['by']}"
        )
    return 0


def _ui(args) -> int:
    from raymlops.registry.tracking import artifact_root

    uri, _ = _registry_location(args)
    if uri.startswith(("http://", "https://")):
        raise RaymlopsError(
            f"{uri} is a tracking server: open its own UI in a browser; `raymlops ui` serves a local store"
        )
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        uri,
        "--host",
        args.host,
        "--port",
        str(args.port),
        "--workers",
        str(args.workers),
    ]
    if artifact_root(uri):
        cmd += ["--default-artifact-root", artifact_root(uri)]
    print(f"MLflow UI on http://{args.host}:{args.port} for {uri}", flush=True)
    os.execv(sys.executable, cmd)
    return 0


def _console(args) -> int:
    from raymlops.config import load_config
    from raymlops.console import Settings, serve_console

    configs = [load_config(c) for c in args.config]
    storage = (
        args.storage or (configs[0].storage if configs else None) or os.environ.get("RAYMLOPS_STORAGE") or "./.raymlops"
    )
    probe = argparse.Namespace(
        config=args.config[0] if args.config else None, storage=storage, tracking_uri=args.tracking_uri
    )
    try:
        uri, _ = _registry_location(probe)
    except SetupError as e:  # no embedded store yet: the models pages say so; nothing creates an empty one
        print(f"warning: {e}", file=sys.stderr)
        uri = None
    import socket

    with socket.socket() as probe_port:  # a clear error now, not uvicorn's after the start-up line
        try:
            probe_port.bind((args.host, args.port))
        except OSError as e:
            raise SetupError(
                f"--port {args.port}: cannot listen on {args.host}:{args.port} ({e.strerror}); pass another --port"
            ) from None
    token = os.environ.get("RAYMLOPS_CONSOLE_TOKEN") or secrets.token_urlsafe(18)
    settings = Settings(
        storage=storage,
        tracking_uri=uri,
        configs=configs,
        read_only=args.read_only,
        token=token,
        mlflow_ui=args.mlflow_ui,
    )
    print(
        f"raymlops console on http://{args.host}:{args.port} for {storage}"
        + (" (read-only)" if args.read_only else f"; token for promote/rollback: {token}"),
        flush=True,
    )
    serve_console(settings, args.host, args.port)
    return 0


def _reproduce(args) -> int:
    from raymlops.pipeline.reproduce import reproduce

    got = reproduce(
        args.run, args.storage, lambda m: print(f"[raymlops] {m}", file=sys.stderr, flush=True), args.address
    )
    ok = got["metrics_match"] and got["model_bytes_match"]
    print(json.dumps(got, indent=2))
    print(
        f"run {got['run']} reproduced as {got['reproduction']}: metrics "
        f"{'match' if got['metrics_match'] else 'DIFFER'}, model bytes "
        f"{'match' if got['model_bytes_match'] else 'DIFFER'}"
    )
    return 0 if ok else 1


def _lineage(args) -> int:
    from raymlops.registry.lineage import format_lineage, lineage
    from raymlops.registry.models import registry_cache

    uri, _ = _registry_location(args)
    d = lineage(args.uri, uri, registry_cache())  # this machine's copies, as serving and load_model use
    print(json.dumps(d, indent=2, default=str) if args.json else format_lineage(d))
    return 0


def dispatch(args) -> int:
    if args.cmd == "validate":
        from raymlops.config import load_config

        load_config(args.config, args.overrides)
        print("OK")
        return 0
    if args.cmd == "schema":
        from raymlops.config import json_schema, markdown_reference

        if args.markdown:
            sys.stdout.write(markdown_reference())
            return 0
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

        cmd, env, url = tracking_server_command(
            args.storage, args.backend_store_uri, args.host, args.port, args.workers
        )
        print(
            f"MLflow tracking server on {url} (artifacts in {args.storage}); set MLFLOW_TRACKING_URI={url}", flush=True
        )
        os.execve(cmd[0], cmd, env)
    if args.cmd == "reproduce":
        return _reproduce(args)
    if args.cmd == "console":
        return _console(args)
    if args.cmd == "lineage":
        return _lineage(args)
    if args.cmd in ("check", "drift", "monitor", "retrain"):
        return _monitoring(args)
    if args.cmd == "predict":
        return _predict(args)
    if args.cmd == "explore":
        return _explore(args)
    if args.cmd == "k8s":
        return _k8s(args)
    return _run(args)
