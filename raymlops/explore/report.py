"""The profile as one self-contained HTML page: tables and inline SVG charts, no script and nothing fetched,
so it opens offline, in a notebook (``_repr_html_``), as an MLflow artifact or inside the console."""

from __future__ import annotations

import math
from html import escape
from typing import Any

A, B = "#4c78a8", "#f58518"  # reference / current
STYLE = """
.rx{font-family:system-ui,sans-serif;font-size:13px;color:#222;max-width:1100px}
.rx table{border-collapse:collapse;margin:6px 0}.rx td,.rx th{border-bottom:1px solid #ddd;padding:3px 8px;
text-align:right}.rx th:first-child,.rx td:first-child{text-align:left}.rx .warn{color:#a33}
.rx section{border-top:2px solid #eee;padding:6px 0}.rx .cols{display:flex;flex-wrap:wrap;gap:18px}
.rx .drift{color:#a33;font-weight:600}.rx .ok{color:#2a7}.rx small{color:#666}
"""


def render(p: dict[str, Any]) -> str:
    title = f"raymlops explore: {p['name']}"
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
        f"<style>{STYLE}</style></head><body>{fragment(p)}</body></html>"
    )


def fragment(p: dict[str, Any]) -> str:
    """The report's body alone (for the console's Data page)."""
    parts = [f"<div class='rx'><h1>{escape(p['name'])}</h1>", _summary(p), _warnings(p)]
    if p.get("comparison"):
        parts.append(_comparison(p["comparison"]))
    parts += [_overview(p), _table(p)]
    parts += [_column(n, c, (p.get("associations") or {}).get(n)) for n, c in p["columns"].items()]
    return "".join(parts) + "</div>"


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "-"
        return f"{v:,.4g}" if abs(v) < 1e6 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return escape(str(v))


def _summary(p: dict) -> str:
    t, e = p["table"], p["errors"]
    return (
        f"<p>{p['rows']:,} rows, {len(p['columns'])} columns profiled"
        f"{' (skipped: ' + escape(', '.join(p['skipped'])) + ')' if p['skipped'] else ''}; "
        f"{_duplicates(t)}; "
        f"{p['seconds']:.1f} s.<br><small>Quantiles and histograms come from KLL sketches (rank error "
        f"{e['quantile_rank']:.2%} at 99% confidence), distinct counts from HyperLogLog (standard error "
        f"{e['distinct_relative']:.2%}); counts, nulls, min, max, mean and std are exact.</small></p>"
    )


def _duplicates(t: dict) -> str:
    n, err = t["duplicate_rows"], t["duplicate_rows_error"]
    if n <= err:
        return f"no duplicate rows detectable (estimate {n:,} ± {err:,})"
    return f"about {n:,} duplicate rows (± {err:,})"


def _warnings(p: dict) -> str:
    if not p["warnings"]:
        return "<p class='ok'>No warnings.</p>"
    items = "".join(f"<li><b>{escape(w['kind'])}</b>: {escape(w['message'])}</li>" for w in p["warnings"])
    return f"<section><h2>Warnings ({len(p['warnings'])})</h2><ul class='warn'>{items}</ul></section>"


def _overview(p: dict) -> str:
    rows = []
    for n, c in p["columns"].items():
        center = (
            f"{_fmt(c.get('min'))} / {_fmt(c.get('mean'))} / {_fmt(c.get('max'))}"
            if c["kind"] == "numeric"
            else (_fmt(c["top"][0]["value"]) if c.get("top") else f"{_fmt(c.get('min'))} .. {_fmt(c.get('max'))}")
        )
        rows.append(
            f"<tr><td><a href='#col-{escape(n)}'>{escape(n)}</a></td><td>{c['kind']}</td>"
            f"<td>{escape(c['type'])}</td><td>{c['null_share']:.1%}</td><td>{_fmt(c['distinct'])}</td>"
            f"<td>{center}</td></tr>"
        )
    return (
        "<section><h2>Columns</h2><table><tr><th>column</th><th>kind</th><th>type</th><th>missing</th>"
        "<th>distinct</th><th>min / mean / max, or most frequent</th></tr>" + "".join(rows) + "</table></section>"
    )


def _table(p: dict) -> str:
    t = p["table"]
    out = ["<section><h2>Table</h2><div class='cols'>"]
    if t.get("correlation"):
        out.append(_heatmap(t["correlation"]))
    if t.get("rows_per_day"):
        days = t["rows_per_day"]
        step = days.get("bucket_days", 1)
        unit = "day" if step == 1 else f"{step} days"
        out.append(
            f"<div><b>Rows per {unit} of {escape(str(p['time']))}</b> <small>from {days['first']}, "
            f"{len(days['counts'])} points</small><br>{_line(days['counts'])}</div>"
        )
    return "".join(out) + "</div></section>"


def _column(name: str, c: dict, assoc: dict | None) -> str:
    figures = {"count": c["count"], "missing": f"{c['nulls']:,} ({c['null_share']:.1%})", "distinct": c["distinct"]}
    chart = ""
    if c["kind"] == "numeric":
        figures.update(
            {
                "zeros": c["zeros"],
                "mean": c["mean"],
                "std": c["std"],
                "skew": c["skew"],
                "min": c["min"],
                "max": c["max"],
            }
        )
        figures.update({f"p{float(q) * 100:g}": v for q, v in c.get("quantiles", {}).items()})
        if c.get("histogram"):
            h = c["histogram"]
            chart = _bars(
                [float(x) for x in h["counts"]], [f"{_fmt(a)}..{_fmt(b)}" for a, b in zip(h["edges"], h["edges"][1:])]
            )
    elif c["kind"] == "categorical":
        if c.get("length"):
            figures.update(
                {
                    "length min": c["length"]["min"],
                    "length mean": c["length"]["mean"],
                    "length max": c["length"]["max"],
                    "empty": c.get("empty", 0),
                }
            )
        top = c.get("top", [])
        chart = _hbars([t["share"] for t in top], [str(t["value"]) for t in top])
    else:
        figures.update({"first": c["min"], "last": c["max"]})
    rows = "".join(
        f"<tr><td>{escape(k)}</td><td>{_fmt(v) if not isinstance(v, str) else escape(v)}</td></tr>"
        for k, v in figures.items()
    )
    extra = _association(assoc) if assoc else ""
    return (
        f"<section id='col-{escape(name)}'><h3>{escape(name)} <small>{c['kind']}, {escape(c['type'])}</small>"
        f"</h3><div class='cols'><table>{rows}</table><div>{chart}</div>{extra}</div></section>"
    )


def _association(a: dict) -> str:
    head = (
        f"<b>With the label</b> <small>mutual information {a['mutual_information']:.4f} bits, "
        f"{a['uncertainty']:.1%} of the label's entropy</small><br>"
    )
    if "positive_rate" in a:
        return (
            f"<div>{head}<small>share of label = {escape(a['positive'])} per bin</small><br>"
            f"{_bars(a['positive_rate'], a['bins'], fmt='{:.1%}')}</div>"
        )
    if a.get("label_mean") is not None:
        return f"<div>{head}<small>mean label per bin</small><br>{_bars(a['label_mean'], a['bins'])}</div>"
    return f"<div>{head}</div>"


def _comparison(cmp: dict) -> str:
    verdict = (
        f"<p class='drift'>Drift in {len(cmp['drifted'])} column(s): {escape(', '.join(cmp['drifted']))}</p>"
        if cmp["is_drift"]
        else "<p class='ok'>No column drifted.</p>"
    )
    rows, charts = [], []
    for n, c in cmp["columns"].items():
        d = c.get("drift")
        test = (
            f"{escape(d['test'])}</td><td>{d['p_value']:.3g}</td><td>{_fmt(d['effect'])} "
            f"<small>{escape(d['effect_metric'])}</small></td><td class='{'drift' if d['is_drift'] else 'ok'}'>"
            f"{'drift' if d['is_drift'] else 'no'}"
            if d
            else f"-</td><td>-</td><td>-</td><td><small>{escape(c.get('not_tested', ''))}</small>"
        )
        rows.append(f"<tr><td>{escape(n)}</td><td>{_fmt(c.get('ks_distance'))}</td><td>{test}</td></tr>")
        if c.get("shares") and c.get("edges"):
            labels = [f"{_fmt(a)}..{_fmt(b)}" for a, b in zip(c["edges"], c["edges"][1:])]
            charts.append(f"<div><b>{escape(n)}</b><br>{_bars(c['shares'][0], labels, c['shares'][1])}</div>")
        elif isinstance(c.get("shares"), dict):
            vals = list(c["shares"].items())[:12]
            charts.append(
                f"<div><b>{escape(n)}</b><br>{_hbars([v[0] for _, v in vals], [k for k, _ in vals], [v[1] for _, v in vals])}</div>"
            )
    legend = (
        f"<small><span style='color:{A}'>■</span> {escape(cmp['reference'])} ({cmp['rows'][0]:,} rows) "
        f"<span style='color:{B}'>■</span> {escape(cmp['current'])} ({cmp['rows'][1]:,} rows); test: "
        f"{escape(cmp['test'])} at p = {cmp['p_val']:g}, on uniform samples of {cmp['sample_rows'][0]:,} and "
        f"{cmp['sample_rows'][1]:,} rows</small>"
    )
    return (
        f"<section><h2>Comparison with {escape(cmp['current'])}</h2>{verdict}{legend}<table><tr><th>column</th>"
        "<th>KS distance (sketches)</th><th>test</th><th>p-value</th><th>effect</th><th>drift</th></tr>"
        + "".join(rows)
        + f"</table><div class='cols'>{''.join(charts)}</div></section>"
    )


def _bars(
    values: list[float],
    labels: list[str],
    other: list[float] | None = None,
    fmt: str = "{:,.4g}",
    w: int = 360,
    h: int = 140,
) -> str:
    """Vertical bars (two series side by side with ``other``), a tooltip per bar."""
    top = max([v for v in [*values, *(other or [])] if v is not None and math.isfinite(v)] or [1.0]) or 1.0
    n = max(len(values), 1)
    step = w / n
    bars = []
    for i, _v in enumerate(values):
        for j, (series, color) in enumerate(((values, A), (other, B)) if other else ((values, A),)):
            x = series[i] if series[i] is not None and math.isfinite(series[i]) else 0.0
            bw = step / (2 if other else 1) - 1
            height = max(x, 0) / top * (h - 12)
            bars.append(
                f"<rect x='{i * step + j * (bw + 1):.1f}' y='{h - height:.1f}' width='{max(bw, 1):.1f}' "
                f"height='{height:.1f}' fill='{color}'><title>{escape(labels[i])}: "
                f"{escape(fmt.format(x))}</title></rect>"
            )
    return f"<svg width='{w}' height='{h}' role='img'>{''.join(bars)}</svg>"


def _hbars(values: list[float], labels: list[str], other: list[float] | None = None, w: int = 360) -> str:
    """Horizontal bars of shares with their labels (categories)."""
    row = 16 if not other else 22
    h = row * max(len(values), 1)
    top = max([*values, *(other or [])] or [1.0]) or 1.0
    out = []
    for i, (v, label) in enumerate(zip(values, labels)):
        y = i * row
        out.append(f"<text x='0' y='{y + 11}' font-size='11'>{escape(label[:24])}</text>")
        out.append(
            f"<rect x='150' y='{y + 2}' width='{v / top * (w - 200):.1f}' height='{10 if other else 12}' "
            f"fill='{A}'><title>{escape(label)}: {v:.2%}</title></rect>"
        )
        if other:
            out.append(
                f"<rect x='150' y='{y + 12}' width='{other[i] / top * (w - 200):.1f}' height='9' fill='{B}'>"
                f"<title>{escape(label)}: {other[i]:.2%}</title></rect>"
            )
        out.append(f"<text x='{w - 45}' y='{y + 11}' font-size='11'>{v:.1%}</text>")
    return f"<svg width='{w}' height='{h}' role='img'>{''.join(out)}</svg>"


def _line(values: list[int], w: int = 480, h: int = 120) -> str:
    top = max(values or [1]) or 1
    n = max(len(values) - 1, 1)
    points = " ".join(f"{i / n * w:.1f},{h - v / top * (h - 6):.1f}" for i, v in enumerate(values))
    return (
        f"<svg width='{w}' height='{h}' role='img'><polyline points='{points}' fill='none' stroke='{A}'/>"
        f"<title>rows per day, peak {top:,}</title></svg>"
    )


def _heatmap(corr: dict) -> str:
    names, r = corr["columns"], corr["r"]
    cell, pad = 22, 120
    out = []
    for i, row in enumerate(r):
        out.append(
            f"<text x='{pad - 4}' y='{pad + i * cell + 15}' font-size='10' text-anchor='end'>"
            f"{escape(names[i][:18])}</text>"
        )
        out.append(
            f"<text transform='translate({pad + i * cell + 14},{pad - 4}) rotate(-60)' font-size='10'>"
            f"{escape(names[i][:18])}</text>"
        )
        for j, v in enumerate(row):
            color = (
                "#eee"
                if v is None
                else (f"rgba(76,120,168,{abs(v):.2f})" if v >= 0 else f"rgba(245,133,24,{abs(v):.2f})")
            )
            out.append(
                f"<rect x='{pad + j * cell}' y='{pad + i * cell}' width='{cell - 1}' height='{cell - 1}' "
                f"fill='{color}'><title>{escape(names[i])} x {escape(names[j])}: {_fmt(v)}</title></rect>"
            )
    size = pad + cell * len(names) + 4
    return (
        f"<div><b>Pearson correlation</b><br><svg width='{size}' height='{size}' role='img'>{''.join(out)}</svg></div>"
    )
