"""PNG plots for HTML reports (evaluation, drift) with matplotlib's object-oriented API."""

from __future__ import annotations

import contextlib
import io


@contextlib.contextmanager
def png_figure(title: str, xlabel: str, ylabel: str, figsize: tuple[float, float], dpi: int):
    """Yields (axes, buffer); on exit the figure is saved into the buffer as PNG (legend when labelled).

    The object-oriented Figure draws with Agg without touching pyplot's global backend or figure
    registry (safe in worker processes and notebooks; nothing to close).
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi)
    ax = fig.add_subplot()
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    buf = io.BytesIO()
    yield ax, buf
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=dpi)
