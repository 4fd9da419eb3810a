"""The Change page's series pieces: the ZAN trend chart and what the time slider picks.

A series' figures come from :func:`flair_viz.change.compute_trend` (one change per interval); this
module only draws them, in the flow colours of the change tiles, so the chart and the map agree.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from flair_viz.change.grouping import FLOW_ARTIFICIALISATION, FLOW_COLORS, FLOW_DEARTIFICIALISATION


def _rgb(code: int, alpha: float = 1.0) -> str:
    r, g, b, _ = FLOW_COLORS[code]
    return f"rgba({r},{g},{b},{alpha})"


def slider_options(vintages: list[str]) -> list[str]:
    """The time slider's stops: every vintage but the first (each stop shows the interval ending there)."""
    return vintages[1:]


def trend_figure(table: pd.DataFrame, selected: int) -> go.Figure:
    """Artificialised (up, red) and de-artificialised (down, green) hectares per interval, and the
    cumulated net as a line; the ``selected`` interval (1-based) is drawn opaque, the others faded."""
    whole = table[table["region"] == "(all)"].sort_values("interval")
    labels = [("SIMULATED " if s else "") + lab for lab, s in zip(whole["label"], whole["simulated"])]
    alpha = [1.0 if i == selected else 0.35 for i in whole["interval"]]
    fig = go.Figure()
    fig.add_bar(x=labels, y=whole["artificialisation_ha"], name="artificialisation (ha)",
                marker_color=[_rgb(FLOW_ARTIFICIALISATION, a) for a in alpha])
    fig.add_bar(x=labels, y=-whole["deartificialisation_ha"], name="de-artificialisation (ha, shown negative)",
                marker_color=[_rgb(FLOW_DEARTIFICIALISATION, a) for a in alpha])
    fig.add_scatter(x=labels, y=whole["cumulative_net_ha"], name="cumulated net artificialisation (ha)",
                    mode="lines+markers", line={"color": "#333"},
                    marker={"size": [14 if i == selected else 7 for i in whole["interval"]]})
    chosen = labels[selected - 1] if 0 < selected <= len(labels) else ""
    fig.update_layout(barmode="relative", title=f"ZAN flows per interval · selected: {chosen}",
                      yaxis_title="hectares", height=380, margin={"l": 40, "r": 10, "t": 50, "b": 40},
                      legend={"orientation": "h", "y": -0.2})
    return fig
