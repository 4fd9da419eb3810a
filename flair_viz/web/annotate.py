"""What the Annotate page draws, decided without Streamlit: score colours, the legend, map layers.

Colours come from one ramp, so the candidate polygons on the map and the legend beside it agree.
"""

from __future__ import annotations

import math

import folium
import geopandas as gpd

from flair_viz.annotate.scoring import COMPONENTS

SCORE_RAMP = ((255, 255, 178), (254, 178, 76), (240, 59, 32), (189, 0, 38))  # low -> high (ColorBrewer YlOrRd)
TOOLTIP_FIELDS: tuple[str, ...] = ("rank", "id", "score", *COMPONENTS)


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


def candidates_layer(table: gpd.GeoDataFrame) -> tuple[folium.GeoJson, gpd.GeoDataFrame]:
    """The candidate polygons, coloured by score, and the WGS84 frame they were drawn from (for click hits)."""
    on_map = table.to_crs("EPSG:4326")
    on_map["colour"] = [score_colour(s) for s in on_map["score"]]
    fields = list(TOOLTIP_FIELDS)
    shown = on_map[[*fields, "colour", "geometry"]].round(3)
    layer = folium.GeoJson(shown.to_json(na="null"), name="Candidates",
                           style_function=lambda f: {"color": "#333", "weight": 1,
                                                     "fillColor": f["properties"]["colour"], "fillOpacity": 0.55},
                           highlight_function=lambda f: {"weight": 3, "color": "#000"},
                           tooltip=folium.GeoJsonTooltip(fields=fields))
    return layer, on_map


def selections_layer(current: gpd.GeoDataFrame) -> folium.GeoJson:
    """Stored selections as dashed blue outlines over the candidates."""
    return folium.GeoJson(current[["id", "status", "geometry"]].to_crs("EPSG:4326").to_json(), name="Selections",
                          style_function=lambda f: {"color": "#1f6feb", "weight": 3, "fill": False, "dashArray": "6 4"},
                          tooltip=folium.GeoJsonTooltip(fields=["id", "status"]))
