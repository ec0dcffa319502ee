"""Plotly figures (plain dicts, drawn in the browser by the plotly.min.js the console serves itself)."""

from __future__ import annotations

from typing import Any

from raymlops.console.schemas import AppInfo, Compare, MonitoringPage, RunDetail

LAYOUT = {
    "margin": {"l": 60, "r": 10, "t": 30, "b": 40},
    "height": 360,
    "legend": {"orientation": "h", "y": -0.3},
    "template": "plotly_white",
}
P_FLOOR = 1e-16  # p-values below it are drawn at it (a log axis has no 0; they are all far past any threshold)


def _fig(title: str, data: list[dict], **layout: Any) -> dict:
    return {"data": data, "layout": {**LAYOUT, "title": {"text": title, "font": {"size": 14}}, **layout}}


def _line(name: str, y: list, x: list | None = None, **kw: Any) -> dict:
    return {
        "type": "scatter",
        "mode": "lines+markers",
        "name": name,
        "x": x or list(range(1, len(y) + 1)),
        "y": y,
        "marker": {"size": 4},
        **kw,
    }


def trial_curves(d: RunDetail) -> dict | None:
    data = [_line(f"{t.trial_id} {k}", v) for t in d.trials for k, v in t.curve.items()]
    return (
        _fig("Validation metric per boosting round, per trial", data, xaxis={"title": {"text": "round"}})
        if data
        else None
    )


def importance(d: RunDetail) -> dict | None:
    if not d.importance:
        return None
    items = sorted(d.importance.items(), key=lambda kv: kv[1])[-20:]
    return _fig(
        "Feature importance (gain)",
        [{"type": "bar", "orientation": "h", "x": [v for _, v in items], "y": [k for k, _ in items]}],
        height=420,
        margin={"l": 190},
    )


def compare_curves(c: Compare) -> dict | None:
    data = [_line(f"{ref} {k}", v) for ref, curves in c.curves.items() for k, v in curves.items()]
    return _fig("Best trial's validation curve, per run", data, xaxis={"title": {"text": "round"}}) if data else None


def traffic(app: AppInfo) -> dict | None:
    data = [_line(name, s["requests"], s["t"]) for name, s in app.series.items()]
    return _fig("Requests per minute", data) if data else None


def weights(app: AppInfo) -> dict | None:
    """The canary's share at each event of its history (start, steps, rollback, completion)."""
    import time

    h = [e for e in app.canary_history if isinstance(e, dict) and e.get("percent") is not None]
    if not h:
        return None
    x = [
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(e["at"])) if isinstance(e.get("at"), (int, float)) else i
        for i, e in enumerate(h)
    ]
    return _fig(
        "Canary share per event",
        [_line("canary %", [e["percent"] for e in h], x, line={"shape": "hv"}, text=[e.get("event") for e in h])],
    )


def drift(page: MonitoringPage, variant: str) -> list[dict]:
    """Per variant: p-value per feature per window over time (log axis, the threshold dashed, alarms in red),
    and the statistic per feature. Time on the x axis: a model swap restarts the window numbers."""
    series = page.drift.get(variant) or {}
    if not series:
        return []
    pv, st = [], []
    clip = lambda ps: [None if p is None else max(p, P_FLOOR) for p in ps]  # noqa: E731
    for f, s in sorted(series.items()):
        hover = [f"window {w}" for w in s["window"]]
        pv.append(_line(f, clip(s["p_value"]), s["ts"], text=hover))
        st.append(_line(f, s["statistic"], s["ts"], text=hover))
    first = next(iter(series.values()))
    pv.append(
        {
            "type": "scatter",
            "mode": "lines",
            "name": "threshold",
            "x": first["ts"],
            "y": first["threshold"],
            "line": {"dash": "dash", "color": "black"},
        }
    )
    alarms = page.alarms.get(variant) or []
    if alarms:
        pv.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": "drift verdict",
                "x": [a[2] for a in alarms],
                "y": [max(a[1] if a[1] is not None else P_FLOOR, P_FLOOR) for a in alarms],
                "text": [f"window {a[0]}" for a in alarms],
                "marker": {"color": "red", "size": 10, "symbol": "x"},
            }
        )
    axis = {"title": {"text": "window time (UTC)"}, "type": "date"}
    return [
        _fig(
            f"{variant}: p-value per feature per window (floor {P_FLOOR:g})",
            pv,
            yaxis={"type": "log", "exponentformat": "power"},
            xaxis=axis,
        ),
        _fig(f"{variant}: test statistic per feature per window", st, xaxis=axis),
    ]


def performance(page: MonitoringPage, variant: str) -> dict | None:
    w = page.performance.get(variant) or []
    if not w:
        return None
    x = [e.get("end_ts") for e in w]
    data = [_line(w[0].get("metric") or "metric", [e.get("value") for e in w], x)]
    if w[0].get("floor") is not None:
        data.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": "floor",
                "x": x,
                "y": [w[0]["floor"]] * len(x),
                "line": {"dash": "dash", "color": "red"},
            }
        )
    return _fig(f"{variant}: late-label {w[0].get('metric')} per window", data)
