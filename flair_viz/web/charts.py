"""The Metrics and Change pages' plotly figures, built from library results.

Pages only place these figures; how a confusion heatmap becomes clickable, or a from-to matrix a
Sankey diagram, is written once here.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from flair_viz.change.grouping import FLOW_COLORS
from flair_viz.change.views import Flows
from flair_viz.metrics.scores import normalise


def fmt_count(v: float) -> str:
    """A pixel count in a heatmap cell: 1.2M, 35k, 120."""
    if v >= 1e6:
        return f"{v / 1e6:.1f}M"
    if v >= 1e3:
        return f"{v / 1e3:.0f}k"
    return f"{v:.0f}"


def confusion_heatmap(cm: np.ndarray, names: list[str], mode: str, log: bool) -> go.Figure:
    """Confusion heatmap; an invisible scatter of cell centres on top makes cells clickable.

    Streamlit reports selections of point traces only (not heatmap cells), so each cell also has a
    transparent marker (``point_index`` = row * k + column) that plotly itself tints when clicked.
    The figure must not depend on the selection: Streamlit derives the chart's widget ID from the
    figure, and a changed ID drops the click that caused the rerun.
    """
    k = len(names)
    z = normalise(cm, mode)
    shown = np.where(z > 0, np.log10(np.where(z > 0, z, 1)), np.nan) if log else z
    text = [[("" if cm[r, c] == 0 else (fmt_count(cm[r, c]) if mode == "counts" else f"{z[r, c]:.0%}"))
             for c in range(k)] for r in range(k)]
    colorbar = dict(title="log10" if log else ("pixels" if mode == "counts" else "share"))
    fig = go.Figure(go.Heatmap(z=shown, x=names, y=names, text=text, texttemplate="%{text}", textfont=dict(size=9),
                               colorscale="Blues", hoverinfo="skip", colorbar=colorbar))
    rows, cols = np.divmod(np.arange(k * k), k)
    hover = [f"truth <b>{names[r]}</b> → predicted <b>{names[c]}</b><br>{cm[r, c]:,} px"
             + ("" if mode == "counts" else f" · {z[r, c]:.1%}" if np.isfinite(z[r, c]) else "")
             for r, c in zip(rows, cols)]
    fig.add_trace(go.Scatter(x=[names[c] for c in cols], y=[names[r] for r in rows], mode="markers",
                             marker=dict(size=18, opacity=0, symbol="square", color="#ff00ff"), hovertext=hover,
                             hoverinfo="text", selected=dict(marker=dict(opacity=0.55)),
                             unselected=dict(marker=dict(opacity=0)),
                             showlegend=False, name="cells"))
    fig.update_layout(height=640 if k > 13 else 540, margin=dict(l=10, r=10, t=30, b=10),
                      xaxis=dict(title="predicted", tickangle=-45, side="bottom"),
                      yaxis=dict(title="truth", autorange="reversed"), clickmode="event+select")
    return fig


def class_bars(values: np.ndarray, names: list[str], colors: list[str], title: str, delta: bool = False) -> go.Figure:
    """Per-class bars in the classes' colours: a score in 0..1, or (``delta``) a signed difference.

    A class whose score is undefined (absent from truth and prediction) gets no bar but an ``n/a`` label, so
    a missing bar is not read as a zero score."""
    v = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(v)
    shown = [(f"{x:+.3f}" if delta else f"{x:.3f}") if good else "n/a (class absent)" for x, good in zip(v, ok)]
    hover = "%{x}: ΔIoU %{customdata}<extra></extra>" if delta else "%{x}: %{customdata}<extra></extra>"
    fig = go.Figure(go.Bar(x=names, y=np.where(ok, v, 0.0), customdata=shown, text=["" if g else "n/a" for g in ok],
                           textposition="outside", cliponaxis=False,
                           marker=dict(color=colors, line=dict(color="#333", width=1)), hovertemplate=hover))
    fig.update_layout(title=title, height=320 if delta else 340, margin=dict(l=10, r=10, t=40, b=10),
                      xaxis=dict(tickangle=-45), **({} if delta else {"yaxis": dict(range=[0, 1])}))
    return fig


def from_to_heatmap(names: list[str], hectares: np.ndarray) -> go.Figure:
    """The from-to matrix in hectares, rows = before, columns = after."""
    heat = go.Figure(go.Heatmap(z=hectares, x=names, y=names, colorscale="Reds",
                                text=[[f"{v:.4f}" for v in row] for row in hectares], texttemplate="%{text}",
                                hovertemplate="%{y} → %{x}: %{z:.4f} ha<extra></extra>", colorbar={"title": "ha"}))
    heat.update_layout(xaxis_title="after", yaxis_title="before", yaxis_autorange="reversed", height=460,
                       margin={"l": 10, "r": 10, "t": 10, "b": 10})
    return heat


def flows_sankey(flows: Flows) -> go.Figure:
    """The main class changes, links coloured by ZAN flow (red artificialisation, green back, grey other)."""
    link_rgba = {k: f"rgba{(*rgba[:3], 0.45)}" for k, rgba in FLOW_COLORS.items()}
    sankey = go.Figure(go.Sankey(
        node={"label": flows.labels, "color": flows.colors, "pad": 14},
        # dark labels in a white halo: plotly's default (theme-coloured text, shadow) was white on the grey links
        textfont={"color": "#1a1a1a", "size": 13, "shadow": "0 0 3px #fff, 0 0 3px #fff, 0 0 2px #fff"},
        link={"source": flows.source, "target": flows.target, "value": flows.hectares,
              "color": [link_rgba[f] for f in flows.flow], "hovertemplate": "%{value:.4f} ha<extra></extra>"}))
    sankey.update_layout(height=420, margin={"l": 10, "r": 10, "t": 10, "b": 10})
    return sankey
