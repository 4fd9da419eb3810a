"""Folium maps whose JavaScript and CSS come from this app, never from a CDN.

folium's defaults (Leaflet, jQuery, Bootstrap, plugin scripts) point at CDNs; an analyst in an
air-gapped office would get a blank map. Every element we use gets its ``default_js`` /
``default_css`` replaced by the copies that ``scripts/install.sh`` vendors from npm into
``static/vendor/`` and that Streamlit serves under ``/app/static/``. This module knows folium but
not Streamlit, so the same maps can be saved as standalone HTML too.
"""

from __future__ import annotations

import folium
import folium.plugins
from branca.element import Template
from rasterio.warp import transform_bounds

from flair_viz.core import classes
from flair_viz.core.catalog import Dataset
from flair_viz.core.raster import describe
from flair_viz.core.tiling import zoom_range
from flair_viz.web.urls import tile_url

STATIC_URL = "/app/static/vendor"
LEAFLET_JS = [("leaflet", f"{STATIC_URL}/leaflet/leaflet.js")]
LEAFLET_CSS = [("leaflet_css", f"{STATIC_URL}/leaflet/leaflet.css")]
SIDE_BY_SIDE_JS = [("leaflet.sidebyside", f"{STATIC_URL}/leaflet-side-by-side/leaflet-side-by-side.js")]
SIDE_BY_SIDE_CSS = [("leaflet.sidebyside_css", f"{STATIC_URL}/leaflet-side-by-side/leaflet-side-by-side.css")]
DRAW_JS = [("leaflet_draw_js", f"{STATIC_URL}/leaflet-draw/leaflet.draw.js")]
DRAW_CSS = [("leaflet_draw_css", f"{STATIC_URL}/leaflet-draw/leaflet.draw.css")]

MAX_ZOOM = 22
MAX_NATIVE_ZOOM = 20  # 0.2 m pixels sit between z19 and z20 at French latitudes

Bounds = tuple[float, float, float, float]  # west, south, east, north (WGS84)


def dataset_bounds_wgs84(dataset: Dataset) -> Bounds:
    """The dataset's footprint in lon/lat, used to bound tile layers (no 404 tile requests outside)."""
    info = describe(dataset.path)
    return tuple(transform_bounds(info.crs or "EPSG:2154", "EPSG:4326", *info.bounds))  # type: ignore[return-value]


def dataset_tile_url(dataset_id: str, base_url: str | None = None, **params: str | int | float) -> str:
    """Leaflet URL template for a catalog dataset's tiles (``preset=`` ... as query)."""
    return tile_url(f"/datasets/{dataset_id}", base_url, **params)


def _localise(element: folium.Element, js: list, css: list) -> folium.Element:
    element.default_js = js
    element.default_css = css
    return element


def floor_zoom(*datasets: Dataset | None) -> int:
    """The coarsest zoom every given dataset is served at: the tile server refuses coarser tiles
    (:func:`flair_viz.core.tiling.zoom_range`), so a map that stops there never asks for a tile it is refused."""
    return max((zoom_range(d, "WebMercatorQuad")[0] for d in datasets if d is not None), default=0)


def make_map(bounds: Bounds, height: str = "100%", min_zoom: int = 0) -> folium.Map:
    """A Leaflet map fitted to ``bounds`` with local assets and no online basemap, not zooming out past
    ``min_zoom`` (see :func:`floor_zoom`)."""
    west, south, east, north = bounds
    m = folium.Map(location=[(south + north) / 2, (west + east) / 2], zoom_start=18, tiles=None,
                   max_zoom=MAX_ZOOM, control_scale=True, height=height)
    m.options["min_zoom"] = min_zoom  # folium gives its own min_zoom to the default tiles only, not to L.map
    _localise(m, LEAFLET_JS, LEAFLET_CSS)
    ViewportHint().add_to(m)  # before any tile layer: their first tile URLs already carry the hint
    m.fit_bounds([[south, west], [north, east]])
    return m


class ViewportHint(folium.MacroElement):
    """Live prediction tile URLs carry the tile range the map shows (``viewport=x0,y0,x1,y1``).

    Why: a browser opens at most 6 connections to one server, so the tiles of a viewport arrive six at a
    time and would be predicted as several small regions, each paying its own context margin. With the
    range, the first tile request lets the server predict the whole viewport as one region
    (:func:`flair_viz.predict.live.prediction`). Leaflet 1.9's tile-range helpers are used as Leaflet
    itself uses them to pick the tiles to load."""

    _template = Template("""
        {% macro script(this, kwargs) %}
        (function() {
            if (L.TileLayer.prototype._flairViewportHint) { return; }
            L.TileLayer.prototype._flairViewportHint = true;
            var tileUrl = L.TileLayer.prototype.getTileUrl;
            L.TileLayer.prototype.getTileUrl = function(coords) {
                var url = tileUrl.call(this, coords);
                if (url.indexOf("/predict/") < 0 || !this._map) { return url; }
                var r = this._pxBoundsToTileRange(this._getTiledPixelBounds(this._map.getCenter()));
                return url + (url.indexOf("?") < 0 ? "?" : "&") + "viewport=" +
                    [r.min.x, r.min.y, r.max.x, r.max.y].join(",");
            };
        })();
        {% endmacro %}
    """)


def add_basemap(m: folium.Map, url_template: str, attribution: str = "basemap") -> folium.raster_layers.TileLayer:
    """Opt-in online basemap (``$FLAIR_VIZ_BASEMAP_URL``), added under the data; never required."""
    layer = folium.raster_layers.TileLayer(url_template, name="Online basemap", attr=attribution, overlay=True,
                                           max_zoom=MAX_ZOOM, opacity=1.0)
    layer.add_to(m)
    return layer


def tile_layer(url: str, name: str, bounds: Bounds, opacity: float = 1.0, overlay: bool = True,
               attribution: str = "IGN – FLAIR, Licence Ouverte 2.0") -> folium.raster_layers.TileLayer:
    """A tile layer bounded to its dataset, so Leaflet never asks for tiles outside it."""
    west, south, east, north = bounds
    return folium.raster_layers.TileLayer(
        tiles=url, name=name, attr=attribution, overlay=overlay, control=True, opacity=opacity,
        max_zoom=MAX_ZOOM, max_native_zoom=MAX_NATIVE_ZOOM, min_zoom=12,
        bounds=[[south, west], [north, east]], tile_size=256,
    )


def add_side_by_side(m: folium.Map, left: folium.raster_layers.TileLayer,
                     right: folium.raster_layers.TileLayer) -> folium.Map:
    """Swipe control between two layers (leaflet-side-by-side, served locally)."""
    left.add_to(m)
    right.add_to(m)
    sbs = folium.plugins.SideBySideLayers(layer_left=left, layer_right=right)
    _localise(sbs, SIDE_BY_SIDE_JS, SIDE_BY_SIDE_CSS).add_to(m)
    return m


def add_draw_control(m: folium.Map, **kwargs) -> folium.plugins.Draw:
    """Leaflet.Draw with local assets, for drawing annotation regions."""
    draw = folium.plugins.Draw(**kwargs)
    _localise(draw, DRAW_JS, DRAW_CSS).add_to(m)
    return draw


def add_layer_control(m: folium.Map) -> folium.LayerControl:
    lc = folium.LayerControl(collapsed=False)
    lc.add_to(m)
    return lc


class TileProgress(folium.MacroElement):
    """A small map control that counts tiles still loading, so an analyst sees live predictions being
    computed instead of an empty map (Leaflet's tileloadstart / tileload / tileerror events)."""

    _template = Template("""
        {% macro script(this, kwargs) %}
        (function() {
            var map = {{ this._parent.get_name() }};
            var box = L.control({position: "bottomleft"});
            box.onAdd = function() {
                var div = L.DomUtil.create("div", "flair-tile-progress");
                div.style.cssText = "background:rgba(255,255,255,.9);padding:2px 8px;border-radius:4px;" +
                                    "font:12px sans-serif;display:none";
                return div;
            };
            box.addTo(map);
            var pending = 0, div = box.getContainer();
            function show() {
                div.style.display = pending > 0 ? "block" : "none";
                div.textContent = "Computing " + pending + " tile" + (pending > 1 ? "s" : "") + "…";
            }
            map.eachLayer(function(layer) {
                if (!(layer instanceof L.TileLayer)) { return; }
                layer.on("tileloadstart", function() { pending += 1; show(); });
                layer.on("tileload tileerror", function() { pending = Math.max(0, pending - 1); show(); });
            });
        })();
        {% endmacro %}
    """)


def add_tile_progress(m: folium.Map) -> TileProgress:
    """Add the loading counter; call it after the tile layers are on the map."""
    progress = TileProgress()
    progress.add_to(m)
    return progress


def legend_html(values: list[int] | None = None) -> str:
    """An HTML legend in FLAIR colours (all classes, or only ``values``)."""
    items = [c for c in classes.FLAIR1_CLASSES if values is None or c.value in values]
    rows = "".join(
        f'<div style="display:flex;align-items:center;gap:6px;font-size:0.8rem;line-height:1.4">'
        f'<span style="display:inline-block;width:14px;height:14px;background:{c.color};border:1px solid #888"></span>'
        f"{c.value} {c.name}</div>"
        for c in items
    )
    return f'<div class="flair-legend">{rows}</div>'
