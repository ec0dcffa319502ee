"""The console's FastAPI app: each page is an HTML view and its `/api/...` JSON twin built by one function;
mutating actions are token-protected POSTs refused from other origins."""

from __future__ import annotations

import functools
import json
import mimetypes
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import Body, FastAPI, Header, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from raymlops.console import catalog, charts, monitoring, registry, runs, traffic
from raymlops.console.context import Console, Settings
from raymlops.console.schemas import (
    AliasMove,
    AppInfo,
    CanaryRequest,
    CanaryRequested,
    Compare,
    DataProfile,
    DatasetsPage,
    DeploymentsPage,
    FeaturesPage,
    ModelInfo,
    ModelsPage,
    MonitoringPage,
    Overview,
    Panel,
    PromoteRequest,
    RollbackRequest,
    RunDetail,
    RunsPage,
    ViewInfo,
)
from raymlops.errors import RaymlopsError
from raymlops.serving.controller import read_state, request_action

STATIC = {"plotly.min.js": None, "console.js": "static/console.js", "console.css": "static/console.css"}
HERE = Path(__file__).parent


class NotFound(RaymlopsError):
    pass


def _plotly_js() -> Path:
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def _templates():
    import jinja2

    # Records (events, canary history) vary in their keys: a missing one renders empty.
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True)
    env.filters["tojson_attr"] = lambda v: json.dumps(v, default=str)
    env.filters["num"] = lambda v, spec=".4f": "" if v is None else format(v, spec) if isinstance(v, float) else str(v)
    return env


def _report(profile: dict) -> str:
    """The profile's HTML body, built by explore's report (it escapes every value itself)."""
    from raymlops.explore.report import STYLE, fragment

    try:
        return f"<style>{STYLE}</style>{fragment(profile)}"
    except Exception as e:  # a profile of another format: the page says so instead of failing
        from html import escape

        return f"<div class='panel'>This profile cannot be drawn ({escape(type(e).__name__)}: {escape(str(e))}); its JSON is linked above.</div>"


def _status(e: Exception) -> int:
    from raymlops.console.runs import RunNotFound
    from raymlops.registry import NotRegistered

    if isinstance(e, (NotFound, RunNotFound, NotRegistered)):
        return 404
    if type(e) is ValueError:  # a bad argument the page function refused
        return 422
    return 503  # a source that could not be read: that page says so, the console keeps answering


def create_app(settings: Settings, warm: bool = False) -> FastAPI:
    """The console app over ``settings`` (storage, tracking store, configs, token, read-only); ``warm`` reads
    every source once in the background at start."""
    # A tracking server that is down must cost a page one short wait, not MLflow's default retries (minutes).
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    con = Console(settings)
    if warm:
        import threading

        threading.Thread(target=con.warm, daemon=True, name="console-warm").start()
    env = _templates()
    app = FastAPI(
        title="raymlops console",
        version="1",
        description="Runs, models, features, datasets, deployments and monitoring, read from storage "
        "and MLflow. Every page under / has its JSON twin under /api.",
    )
    app.state.console = con

    def render(template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        html = env.get_template(template).render(read_only=settings.read_only, storage=settings.storage, **ctx)
        return HTMLResponse(html, status_code=status)

    def twin(path: str, template: str, model: type, extra: Callable[[Any], dict] | None = None):
        """Registers ``fn`` as GET /api{path} (JSON, in OpenAPI) and GET {path} (its HTML page)."""

        def deco(fn):
            @functools.wraps(fn)
            def api(*a, **k):
                try:
                    return fn(*a, **k)
                except HTTPException:
                    raise
                except Exception as e:  # a source that failed: 503 (404 for what does not exist), never a 500
                    code = _status(e)
                    raise HTTPException(code, detail=f"{type(e).__name__}: {e}") from e

            @functools.wraps(fn)
            def html(*a, **k):
                try:
                    data = fn(*a, **k)
                except HTTPException as e:
                    detail = (
                        e.detail
                        if isinstance(e.detail, str)
                        else "; ".join(f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg')}" for d in e.detail)
                    )
                    return render(template, e.status_code, data=None, error=Panel(source=path, error=detail))
                except Exception as e:  # any failure of a source: an error panel on this page, not a 500
                    code = _status(e)
                    return render(template, code, data=None, error=Panel(source=path, error=f"{type(e).__name__}: {e}"))
                return render(template, data=data, error=None, **(extra(data) if extra else {}))

            app.add_api_route(
                "/api" + (path if path != "/" else "/overview"),
                api,
                methods=["GET"],
                response_model=model,
                name=f"api_{fn.__name__}",
            )
            app.add_api_route(
                path, html, methods=["GET"], response_class=HTMLResponse, include_in_schema=False, name=fn.__name__
            )
            return fn

        return deco

    # ------------------------------------------------------------------ pages

    def _apps_overview() -> tuple[list[AppInfo], list[Panel]]:
        out, panels = [], []
        for a in con.apps():
            try:
                out.append(traffic.app_info(a, con.serving_dir(a), con.request_log(a), con.logs))
            except Exception as e:
                panels.append(Panel(source=f"app {a}", error=f"{type(e).__name__}: {e}"))
        return out, panels

    @twin("/", "overview.html", Overview)
    def overview() -> Overview:
        panels: list[Panel] = []
        summaries = []
        try:
            summaries = con.runs.all()
        except Exception as e:
            panels.append(Panel(source=con.store.url("runs"), error=f"{type(e).__name__}: {e}"))
        pipelines: dict[str, int] = {}
        for s in summaries:
            pipelines[s.pipeline] = pipelines.get(s.pipeline, 0) + 1
        apps, more = _apps_overview()
        alerts: list[dict] = []
        for a in con.apps():
            try:
                alerts += [
                    dict(e, app=e.get("app", a))
                    for e in con.histories.read(monitoring.join(con.monitoring_dir(a), monitoring.HISTORY))[-20:]
                ]
            except Exception as e:
                panels.append(Panel(source=f"monitoring of {a}", error=f"{type(e).__name__}: {e}"))
        alerts.sort(key=lambda e: e.get("ts") or 0, reverse=True)
        models: list[ModelInfo] = []
        try:
            models = con.models().models
        except Exception as e:
            panels.append(Panel(source=f"MLflow {settings.tracking_uri}", error=f"{type(e).__name__}: {e}"))
        latest = sorted(summaries, key=lambda s: s.created or "", reverse=True)[:10]
        return Overview(
            storage=settings.storage,
            tracking_uri=settings.tracking_uri,
            pipelines=pipelines,
            latest_runs=latest,
            apps=apps,
            alerts=[dict(e, ts=monitoring._iso(e.get("ts"))) for e in alerts[:20]],
            models=models,
            panels=panels + more,
        )

    @twin("/runs", "runs.html", RunsPage)
    def runs_page(
        pipeline: str | None = None,
        status: Annotated[str | None, Query(pattern="^(ok|partial|failed)$")] = None,
        q: str | None = None,
        sort: str = "created",
        order: Annotated[str, Query(pattern="^(asc|desc)$")] = "desc",
        page: Annotated[int, Query(ge=1)] = 1,
        per_page: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> RunsPage:
        try:
            runs.check_sort(sort)
        except ValueError as e:
            raise HTTPException(422, detail=[{"loc": ["query", "sort"], "msg": str(e), "type": "value_error"}]) from e
        return runs.page(con.runs, pipeline, status, q, sort, order, page, per_page)

    @twin(
        "/runs/{pipeline}/{run_id}",
        "run.html",
        RunDetail,
        extra=lambda d: {"figs": [f for f in (charts.trial_curves(d), charts.importance(d)) if f]},
    )
    def run_page(pipeline: str, run_id: str) -> RunDetail:
        return runs.detail(con.runs, pipeline, run_id, con.mlflow_ui(), con.experiment_of)

    @app.get("/runs/{pipeline}/{run_id}/files/{name}", include_in_schema=False)
    def run_file(pipeline: str, run_id: str, name: str) -> Response:
        if name not in runs.report_files(con.runs, pipeline, run_id):
            raise HTTPException(404, detail=f"name: no report file {name!r} in run {pipeline}/{run_id}")
        data = con.store.read_bytes("runs", pipeline, run_id, "report", name)
        return Response(data, media_type=mimetypes.guess_type(name)[0] or "application/octet-stream")

    @twin("/compare", "compare.html", Compare, extra=lambda c: {"figs": [f for f in (charts.compare_curves(c),) if f]})
    def compare_page(run: Annotated[list[str], Query(description="PIPELINE/RUN_ID, two or more")] = []) -> Compare:  # noqa: B006
        try:
            return runs.compare(con.runs, run)
        except ValueError as e:
            raise HTTPException(422, detail=[{"loc": ["query", "run"], "msg": str(e), "type": "value_error"}]) from e

    @twin("/models", "models.html", ModelsPage)
    def models_page() -> ModelsPage:
        return con.models()

    @twin("/models/{name}", "model.html", ModelInfo)
    def model_page(name: str) -> ModelInfo:
        return con.models(name).models[0]

    @twin("/features", "features.html", FeaturesPage)
    def features_page() -> FeaturesPage:
        return catalog.views(con.feature_stores())

    @twin("/features/{pipeline}/{view}", "view.html", ViewInfo)
    def view_page(pipeline: str, view: str, key: str | None = None) -> ViewInfo:
        stores = con.feature_stores()
        if pipeline not in stores:
            raise NotFound(f"no feature store of pipeline {pipeline!r} (pass its config with --config)")
        got = catalog.views({pipeline: stores[pipeline]}, view, key)
        if not got.views:
            raise NotFound(f"no feature view {view!r} in pipeline {pipeline!r}")
        return got.views[0]

    @twin("/datasets", "datasets.html", DatasetsPage)
    def datasets_page() -> DatasetsPage:
        return catalog.datasets(con.runs)

    @twin("/data/{pipeline}/{run_id}", "data.html", DataProfile, extra=lambda d: {"report": _report(d.profile)})
    def data_page(pipeline: str, run_id: str) -> DataProfile:
        return catalog.profile(con.store, con.runs, pipeline, run_id)

    @twin("/deployments", "deployments.html", DeploymentsPage)
    def deployments_page() -> DeploymentsPage:
        apps, panels = _apps_overview()
        return DeploymentsPage(apps=apps, panels=panels)

    @twin(
        "/deployments/{app_name}",
        "deployment.html",
        AppInfo,
        extra=lambda a: {"figs": [f for f in (charts.traffic(a), charts.weights(a)) if f]},
    )
    def deployment_page(app_name: str) -> AppInfo:
        if app_name not in con.apps():
            raise NotFound(f"no app {app_name!r} in {settings.storage}")
        return traffic.app_info(app_name, con.serving_dir(app_name), con.request_log(app_name), con.logs)

    @twin(
        "/monitoring/{app_name}",
        "monitoring.html",
        MonitoringPage,
        extra=lambda m: {
            "figs": {v: [*charts.drift(m, v), *filter(None, [charts.performance(m, v)])] for v in m.variants}
        },
    )
    def monitoring_page(app_name: str, points: Annotated[int, Query(ge=10, le=5000)] = 500) -> MonitoringPage:
        if app_name not in con.apps():
            raise NotFound(f"no app {app_name!r} in {settings.storage}")
        return monitoring.page(app_name, con.monitoring_dir(app_name), con.variants(app_name), con.histories, points)

    # ------------------------------------------------------------------ actions

    def guard(request: Request, token: str | None) -> None:
        """A mutating request must come from this console's own pages (or a non-browser client) and carry
        the token printed at start."""
        if settings.read_only:
            raise HTTPException(403, detail="the console is read-only (--read-only)")
        origin = request.headers.get("origin")
        if origin is not None and origin != f"{request.url.scheme}://{request.headers.get('host')}":
            raise HTTPException(403, detail=f"origin: cross-site request from {origin} refused")
        site = request.headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            raise HTTPException(403, detail=f"sec-fetch-site: {site} request refused")
        if not token or not secrets.compare_digest(token.encode(), settings.token.encode()):
            raise HTTPException(401, detail="x-raymlops-token: missing or wrong console token (printed at start)")

    def act(fn, *a):
        from raymlops.registry import NotRegistered, PromotionRefused, RegistryError

        try:
            return fn(con.registry(), *a)
        except registry.ActionRefused as e:
            raise HTTPException(422, detail=[{"loc": ["body", e.field], "msg": str(e), "type": "value_error"}]) from e
        except PromotionRefused as e:
            raise HTTPException(409, detail=str(e)) from e
        except NotRegistered as e:
            raise HTTPException(404, detail=str(e)) from e
        except RegistryError as e:  # nothing to roll back to, the version already holds the alias
            raise HTTPException(409, detail=str(e)) from e
        except Exception as e:  # no tracking store, MLflow down, or an alias MLflow refuses (`latest`)
            code = 422 if getattr(e, "error_code", None) == "INVALID_PARAMETER_VALUE" else 503
            raise HTTPException(code, detail=f"{type(e).__name__}: {e}"[:500]) from e
        finally:
            con.forget_models()  # the next page shows the move at once

    @app.post("/api/models/{name}/promote", response_model=AliasMove)
    def promote(
        name: str,
        req: Annotated[PromoteRequest, Body()],
        request: Request,
        x_raymlops_token: Annotated[str | None, Header()] = None,
    ) -> AliasMove:
        """Moves an alias to a version; the model's promotion gate is enforced, a forced move needs a reason."""
        guard(request, x_raymlops_token)
        return act(registry.promote, name, req)

    @app.post("/api/models/{name}/rollback", response_model=AliasMove)
    def rollback(
        name: str,
        req: Annotated[RollbackRequest, Body()],
        request: Request,
        x_raymlops_token: Annotated[str | None, Header()] = None,
    ) -> AliasMove:
        """Moves an alias back to the version it held before its latest move."""
        guard(request, x_raymlops_token)
        return act(registry.rollback, name, req)

    @app.post("/api/deployments/{app_name}/canary", response_model=CanaryRequested, status_code=202)
    def canary(
        app_name: str,
        req: Annotated[CanaryRequest, Body()],
        request: Request,
        x_raymlops_token: Annotated[str | None, Header()] = None,
    ) -> CanaryRequested:
        """Pauses, resumes or rolls back the app's canary: a request its traffic controller applies at its next
        tick (a quarter second while the app runs) and records in the canary history."""
        guard(request, x_raymlops_token)
        where = con.serving_dir(app_name)
        state = (read_state(where) or {}) if where else {}
        if not (state.get("state") or {}).get("canary"):
            raise HTTPException(404, detail=f"app_name: {app_name!r} has no canary in {settings.storage}")
        return CanaryRequested(**request_action(where, req.action, registry.by(req.by), req.reason.strip() or None))

    # ------------------------------------------------------------------ static

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        if name not in STATIC:
            raise HTTPException(404, detail=f"name: no static file {name!r}")
        path = _plotly_js() if STATIC[name] is None else HERE / STATIC[name]
        return Response(
            path.read_bytes(), media_type=mimetypes.guess_type(name)[0], headers={"cache-control": "max-age=3600"}
        )

    @app.exception_handler(RaymlopsError)
    def _raymlops_error(_request: Request, e: RaymlopsError) -> JSONResponse:
        return JSONResponse({"detail": str(e)}, status_code=_status(e))

    return app
