"""What the Overview page shows, decided without Streamlit: colour choices, the tile URL, views, clicks, legend.

The page draws one tile layer of the tile server's ``/overview`` route (all footprints, rasterised), so a
100,000-patch catalog costs the browser no more than a four-patch one. A click gives a lon/lat; the
patch under it is looked up in the footprints' EPSG:2154 bounds and becomes an Explore deep link.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from urllib.parse import urlencode

import folium
import numpy as np
from branca.element import Template

from flair_viz.core.catalog import Catalog
from flair_viz.overview.colours import COLOR_BY, Legend
from flair_viz.overview.footprints import Footprints
from flair_viz.overview.hover import patch_near
from flair_viz.web.maps import MAX_ZOOM, Bounds, make_map
from flair_viz.web.urls import tile_url

COLOR_LABELS = {"domain": "Domain", "date": "Date (year)", "miou": "mIoU per patch", "oa": "Overall accuracy",
                "iou": "IoU of one class", "confusion": "Pixels of one confusion (truth → predicted)"}
ALL = "All patches"
assert set(COLOR_LABELS) == set(COLOR_BY)


def overview_url(base: str, color_by: str = "domain", model: str | None = None, protocol: str = "flair1",
                 cls: int | None = None, truth_class: int | None = None, pred_class: int | None = None) -> str:
    """Leaflet URL template of the overview tiles for one colouring (only the parameters it uses)."""
    params: dict = {"color_by": color_by}
    if color_by not in ("domain", "date"):
        params |= {"model": model, "protocol": protocol}
    if color_by == "iou":
        params["cls"] = cls
    if color_by == "confusion":
        params |= {"truth_class": truth_class, "pred_class": pred_class}
    return tile_url("/overview", base, **params)


def scored_models(cat: Catalog) -> list[str]:
    """Models with stored predictions paired with a ground truth in the catalog: those a score can colour
    (the default model first)."""
    from flair_viz.metrics.pairs import catalog_pairs
    from flair_viz.predict.cards import in_card_order

    return in_card_order(p.model for p in catalog_pairs(cat) if p.model)


def footprint_count(fp: Footprints) -> str:
    """"25 patch footprints", or with stacks "25 patch footprints and 4 BD ORTHO dalles": a stack's dalles
    (no patch number) are drawn too, and counting them as patches misled."""
    dalles = int(fp.table["patch"].isna().sum()) if len(fp) else 0
    patches = len(fp) - dalles
    text = f"{patches:,} patch footprint{'s' if patches != 1 else ''}"
    return text + (f" and {dalles:,} BD ORTHO dalle{'s' if dalles != 1 else ''}" if dalles else "")


def view_choices(fp: Footprints) -> list[str]:
    """``All patches``, then each domain, then each ``domain / zone``: what the map can zoom to."""
    t = fp.table
    domains = sorted({d for d in t["domain"] if d})
    zones = sorted({f"{d} / {z}" for d, z in zip(t["domain"], t["zone"]) if d and z})
    return [ALL, *domains, *zones]


def view_bounds(fp: Footprints, choice: str | None) -> Bounds | None:
    """WGS84 bounds of the chosen view (all footprints when the choice is unknown)."""
    t = fp.table
    if choice and choice != ALL:
        domain, _, zone = choice.partition(" / ")
        rows = (t["domain"] == domain).to_numpy() & ((t["zone"] == zone).to_numpy() if zone else True)
        if rows.any():
            return fp.bounds_wgs84(np.flatnonzero(rows))
    return fp.bounds_wgs84()


def clicked_patch(fp: Footprints, click: Mapping | None, zoom: float | None) -> dict | None:
    """The Explore deep link of the patch under a map click (``{"patch": IMG_id}``), or None.

    A patch drawn as a dot is found within the dot's size at the click's zoom.
    """
    if not click or click.get("lat") is None or click.get("lng") is None:
        return None
    row = patch_near(fp, float(click["lng"]), float(click["lat"]), zoom)
    if row is None:
        return None
    return {"patch": str(fp.table["id"].iloc[row])}


def hover_url(tiles_url: str, score_model: str | None = None) -> str:
    """The ``/overview/at`` URL of a tile URL from :func:`overview_url`: same colouring, same token; with
    ``score_model``, a map coloured by domain or year also names that model's stored mIoU."""
    head, _, query = tiles_url.partition("?")
    if score_model:
        query = "&".join(q for q in (query, urlencode({"score_model": score_model})) if q)
    return head.removesuffix("/tiles/WebMercatorQuad/{z}/{x}/{y}.png") + "/at" + (f"?{query}" if query else "")


OUTLINE_PANE = "flair-outline"  # z-index 150: above the map's background, below the tile pane (200)
OUTLINE_STYLE = {"color": "#444", "weight": 1.2, "fillColor": "#fbfaf5", "fillOpacity": 0.9}


class HoverTooltip(folium.MacroElement):
    """A tooltip that names the footprint under the pointer: after the pointer rests 120 ms, the map asks the
    tile server's ``/overview/at`` (:mod:`flair_viz.overview.hover`) and shows its ``text``. Footprints are
    raster tiles, so there is no vector shape to hover; one lookup per pause, not per mouse move."""

    _template = Template("""
        {% macro script(this, kwargs) %}
        (function() {
            var map = {{ this._parent.get_name() }};
            var url = {{ this.url|tojson }};
            var tip = L.tooltip({direction: "top", offset: [0, -6], className: "flair-overview-tip"});
            var timer = null, asked = 0;
            function ask(e) {
                var n = ++asked;
                var q = "lon=" + e.latlng.lng.toFixed(6) + "&lat=" + e.latlng.lat.toFixed(6) + "&zoom=" + map.getZoom();
                fetch(url + (url.indexOf("?") < 0 ? "?" : "&") + q).then(function(r) { return r.json(); })
                    .then(function(d) {
                        if (n !== asked) { return; }  // the pointer moved on
                        if (d.hit) { tip.setLatLng(e.latlng).setContent(d.text); if (!map.hasLayer(tip)) { tip.addTo(map); } }
                        else if (map.hasLayer(tip)) { map.removeLayer(tip); }
                    }).catch(function() {});
            }
            map.on("mousemove", function(e) { clearTimeout(timer); timer = setTimeout(function() { ask(e); }, 120); });
            map.on("mouseout", function() { clearTimeout(timer); asked++; if (map.hasLayer(tip)) { map.removeLayer(tip); } });
        })();
        {% endmacro %}
    """)

    def __init__(self, url: str) -> None:
        super().__init__()
        self._name = "HoverTooltip"
        self.url = url


def overview_map(bounds: Bounds, url: str, name: str, outline: dict | None = None,
                 score_model: str | None = None) -> folium.Map:
    """A local-assets Leaflet map fitted to ``bounds``: the outline of France (if given, see
    :mod:`flair_viz.overview.outline`) under the overview tile layer (any zoom: tiles are drawn), and the
    hover tooltip (naming ``score_model``'s stored mIoU too when the map is coloured by domain or year)."""
    m = make_map(bounds)
    if outline is not None:  # in a pane under the tiles: Leaflet draws vectors over tile layers by default
        folium.map.CustomPane(OUTLINE_PANE, z_index=150, pointer_events=False).add_to(m)
        folium.GeoJson(outline, name="France", style_function=lambda _: OUTLINE_STYLE, interactive=False,
                       control=False, pane=OUTLINE_PANE).add_to(m)
    folium.raster_layers.TileLayer(tiles=url, name=name, attr="IGN – FLAIR, Licence Ouverte 2.0", overlay=True,
                                   control=False, max_zoom=MAX_ZOOM, max_native_zoom=MAX_ZOOM, min_zoom=0,
                                   tile_size=256).add_to(m)
    HoverTooltip(hover_url(url, score_model)).add_to(m)
    return m


def legend_html(legend: Legend) -> str:
    """The legend as HTML swatches (title, one row per colour, the note)."""
    rows = "".join(
        f'<div style="display:flex;align-items:center;gap:6px;font-size:0.8rem;line-height:1.4">'
        f'<span style="display:inline-block;width:14px;height:14px;background:{c};border:1px solid #888"></span>'
        f"{escape(label)}</div>" for label, c in legend.entries)
    note = f'<div style="font-size:0.75rem;color:#666">{escape(legend.note)}</div>' if legend.note else ""
    return f'<div class="flair-overview-legend"><b>{escape(legend.title)}</b>{rows}{note}</div>'
