"""What the Annotate page draws and says, decided without Streamlit: score colours, the legend, map layers,
the ranking components' names in plain words.

Colours come from one ramp, so the candidate polygons on the map and the legend beside it agree.
"""

from __future__ import annotations

import math

import folium
import geopandas as gpd

from flair_viz.annotate.scoring import COMPONENTS

SCORE_RAMP = ((255, 255, 178), (254, 178, 76), (240, 59, 32), (189, 0, 38))  # low -> high (ColorBrewer YlOrRd)
TOOLTIP_FIELDS: tuple[str, ...] = ("candidate", "score", "why")
TOOLTIP_ALIASES: tuple[str, ...] = ("Candidate", "Score", "Why")
TOOLTIP_STYLE = "font-size:12px;max-width:280px;white-space:normal;padding:4px 6px"
# The ranking's components (annotate.scoring.COMPONENTS) in words an annotation manager reads, with what each measures.
WEIGHT_LABELS: dict[str, str] = {
    "entropy": "Model unsure (entropy)",
    "margin": "Close call between two classes (margin)",
    "gt": "Model wrong vs ground truth",
    "models": "Two models disagree",
    "rare": "Rare classes predicted",
}
WEIGHT_HELP: dict[str, str] = {
    "entropy": "How spread the model's class probabilities are, averaged over the cell's pixels (0 = sure, "
               "1 = every class equally likely).",
    "margin": "How close the two most likely classes are (1 − the mean gap between them): high where the model "
              "hesitates between two classes.",
    "gt": "Share of the cell's pixels where the model disagrees with the ground truth (only where a ground truth "
          "exists).",
    "models": "Share of the cell's pixels where the two models predict different classes (choose a second model).",
    "rare": "Share of the cell's pixels predicted as a rare class (under 2 % of all predicted pixels).",
}
WEIGHT_SHORT: dict[str, str] = {"entropy": "unsure", "margin": "close call", "gt": "wrong vs truth",
                                "models": "models disagree", "rare": "rare classes"}
assert set(WEIGHT_LABELS) == set(WEIGHT_HELP) == set(WEIGHT_SHORT) == set(COMPONENTS)


def score_colour(score: float) -> str:
    """Hex colour of a score in [0, 1] on a yellow-to-red ramp (NaN is the low end)."""
    s = 0.0 if not math.isfinite(score) else min(max(float(score), 0.0), 1.0)
    pos = s * (len(SCORE_RAMP) - 1)
    i = min(int(pos), len(SCORE_RAMP) - 2)
    t = pos - i
    rgb = [round(a + (b - a) * t) for a, b in zip(SCORE_RAMP[i], SCORE_RAMP[i + 1])]
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def score_legend_html(stops: tuple[float, ...] = (0, 0.25, 0.5, 0.75, 1.0)) -> str:
    return "Colour = combined score: " + " ".join(
        f'<span style="background:{score_colour(s)};padding:0 6px">{s:.1f}</span>' for s in stops)


def _number(v: object) -> str:
    return f"{float(v):.2f}" if v is not None and math.isfinite(float(v)) else "n/a"


def tooltip_rows(row) -> dict[str, str]:
    """A candidate's tooltip in three short rows (a tall table of raw component names was clipped by the map)."""
    why = " · ".join(f"{WEIGHT_SHORT[c]} {_number(getattr(row, c, None))}" for c in COMPONENTS
                     if c != "models" or _number(getattr(row, c, None)) != "n/a")
    return {"candidate": f"#{int(row.rank)} · {row.id}", "score": _number(row.score), "why": why}


def candidates_layer(table: gpd.GeoDataFrame) -> tuple[folium.GeoJson, gpd.GeoDataFrame]:
    """The candidate polygons, coloured by score, and the WGS84 frame they were drawn from (for click hits).

    The tooltip follows the pointer (``sticky``) and is three short rows, so it stays inside the map."""
    on_map = table.to_crs("EPSG:4326")
    on_map["colour"] = [score_colour(s) for s in on_map["score"]]
    shown = on_map[["colour", "geometry"]].copy()
    rows = [tooltip_rows(r) for r in on_map.itertuples()]
    for f in TOOLTIP_FIELDS:
        shown[f] = [r[f] for r in rows]
    layer = folium.GeoJson(shown.to_json(na="null"), name="Candidates",
                           style_function=lambda f: {"color": "#333", "weight": 1,
                                                     "fillColor": f["properties"]["colour"], "fillOpacity": 0.55},
                           highlight_function=lambda f: {"weight": 3, "color": "#000"},
                           tooltip=folium.GeoJsonTooltip(fields=list(TOOLTIP_FIELDS), aliases=list(TOOLTIP_ALIASES),
                                                         sticky=True, style=TOOLTIP_STYLE))
    return layer, on_map


def selections_layer(current: gpd.GeoDataFrame) -> folium.GeoJson:
    """Stored selections as dashed blue outlines over the candidates."""
    return folium.GeoJson(current[["id", "status", "geometry"]].to_crs("EPSG:4326").to_json(), name="Selections",
                          style_function=lambda f: {"color": "#1f6feb", "weight": 3, "fill": False, "dashArray": "6 4"},
                          tooltip=folium.GeoJsonTooltip(fields=["id", "status"]))


def add_layer_control(m: folium.Map) -> folium.LayerControl:
    """The layer switcher folded into its icon: open, it covered the candidates' tooltips at the map's top."""
    control = folium.LayerControl(collapsed=True)
    control.add_to(m)
    return control
