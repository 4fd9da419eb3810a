"""Folium maps whose JavaScript and CSS come from this app, never from a CDN.

folium's defaults (Leaflet, jQuery, Bootstrap, plugin scripts) point at CDNs; an analyst in an
air-gapped office would get a blank map. Every element we use gets its ``default_js`` /
``default_css`` replaced by the copies that ``scripts/install.sh`` vendors from npm into
``static/vendor/`` and that Streamlit serves under ``/app/static/``. This module knows folium but
not Streamlit, so the same maps can be saved as standalone HTML too.
"""

from __future__ import annotations

from dataclasses import dataclass

import folium
import folium.plugins
from branca.element import Template
from rasterio.warp import transform_bounds

from flair_viz.core import classes, elevation
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


def make_map(bounds: Bounds, height: str = "100%", min_zoom: int = 0, view_key: str | None = None) -> folium.Map:
    """A Leaflet map fitted to ``bounds`` with local assets and no online basemap, not zooming out past
    ``min_zoom`` (see :func:`floor_zoom`).

    The view is set before any layer is added (:class:`InitialView`), so the first tiles asked for are the
    ones shown. With ``view_key`` (e.g. the patch shown), the map opens where the analyst last left a map of
    that key in this browser tab, and moves together with the other maps of that key on the page."""
    west, south, east, north = bounds
    m = folium.Map(location=[(south + north) / 2, (west + east) / 2], zoom_start=18, tiles=None,
                   max_zoom=MAX_ZOOM, control_scale=True, height=height)
    m.options["min_zoom"] = min_zoom  # folium gives its own min_zoom to the default tiles only, not to L.map
    _localise(m, LEAFLET_JS, LEAFLET_CSS)
    InitialView(bounds, view_key).add_to(m)  # first child: runs before any tile layer is added
    ViewportHint().add_to(m)  # before any tile layer: their first tile URLs already carry the hint
    return m


class InitialView(folium.MacroElement):
    """The map's view, set before any layer exists; with a key, remembered and shared.

    Why not folium's ``fit_bounds``: it runs Leaflet's ``fitBounds`` with animation, and a zoom animation
    only lands on the next frame, so the tile layers added right after it first asked for the tiles of the
    creation zoom (z18 around the centre) and then cancelled them (about 600 on a zone, some of them live
    predictions). Here ``fitBounds`` runs without animation, so the view is final when the layers come.

    With a key, the view lives in the browser tab's ``sessionStorage``, not in the page's Python state:
    every sidebar change rebuilds the map (Streamlit remounts a component whose script changed), and the
    rebuilt map opens at the stored view before its layers load; a round trip through Python would rerun
    the page on every pan. Maps of one key on the page (side-by-side panes, each its own iframe of the
    same origin) tell each other their moves on a ``BroadcastChannel`` named for the tab, and follow.
    """

    _template = Template("""
        {% macro script(this, kwargs) %}
        (function() {
            var map = {{ this._parent.get_name() }};
            var key = {{ this.view_key|tojson }};
            var store = null, saved = null;
            try { store = window.sessionStorage; } catch (e) { store = null; }
            if (key && store) {
                try { saved = JSON.parse(store.getItem("flair-viz:view:" + key)); } catch (e) { saved = null; }
            }
            if (saved && saved.center && typeof saved.zoom === "number") {
                map.setView(saved.center, saved.zoom, {animate: false});
            } else {
                map.fitBounds({{ this.latlng_bounds|tojson }}, {animate: false});
            }
            if (!key || !store) { return; }
            var tab = store.getItem("flair-viz:tab");
            if (!tab) { tab = Math.random().toString(36).slice(2); store.setItem("flair-viz:tab", tab); }
            var me = Math.random().toString(36).slice(2), following = false, frame = null;
            var channel = window.BroadcastChannel ? new BroadcastChannel("flair-viz:views:" + tab) : null;
            function view() {
                var c = map.getCenter();
                return {center: [c.lat, c.lng], zoom: map.getZoom()};
            }
            function tell() {
                frame = null;
                if (channel) { channel.postMessage({key: key, from: me, view: view()}); }
            }
            map.on("move", function() {  // while dragging: the other panes follow frame by frame
                if (!following && frame === null) { frame = window.requestAnimationFrame(tell); }
            });
            map.on("moveend", function() {
                try { store.setItem("flair-viz:view:" + key, JSON.stringify(view())); } catch (e) {}
                if (!following) { tell(); }
            });
            if (channel) {
                channel.onmessage = function(e) {
                    var d = e.data;
                    if (!d || d.key !== key || d.from === me) { return; }
                    var now = view();
                    if (now.zoom === d.view.zoom && Math.abs(now.center[0] - d.view.center[0]) < 1e-9 &&
                        Math.abs(now.center[1] - d.view.center[1]) < 1e-9) { return; }
                    following = true;  // a move we were told of is not told back
                    // reset, not a pan: Leaflet pans a small move by whole pixels, a pixel off the leader
                    try { map.setView(d.view.center, d.view.zoom, {reset: true}); } finally { following = false; }
                };
            }
            window.flairVizView = view;  // for tests and the console: where this map is
        })();
        {% endmacro %}
    """)

    def __init__(self, bounds: Bounds, view_key: str | None = None) -> None:
        super().__init__()
        self._name = "InitialView"
        west, south, east, north = bounds
        self.latlng_bounds = [[south, west], [north, east]]
        self.view_key = view_key


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
               attribution: str = "IGN – FLAIR, Licence Ouverte 2.0", show: bool = True) -> folium.raster_layers.TileLayer:
    """A tile layer bounded to its dataset, so Leaflet never asks for tiles outside it; ``show=False``: listed in
    the layer control, switched off (and no tile asked for until it is switched on)."""
    west, south, east, north = bounds
    return folium.raster_layers.TileLayer(
        tiles=url, name=name, attr=attribution, overlay=overlay, control=True, opacity=opacity, show=show,
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
    computed instead of an empty map.

    A tile is pending from Leaflet's ``tileloadstart`` until it loads, fails (``tileerror``), or is dropped
    before it came: ``tileabort`` (a zoom left it behind) or ``tileunload`` (panned out of view, layer
    removed). Counting only loads and errors left a zone's badge stuck on the tiles Leaflet cancelled.
    Tiles are tracked by layer and coordinates, so an event that comes twice for one tile counts once."""

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
            var pending = {}, div = box.getContainer();
            function show() {
                var n = Object.keys(pending).length;
                div.style.display = n > 0 ? "block" : "none";
                div.textContent = "Computing " + n + " tile" + (n > 1 ? "s" : "") + "…";
                div.setAttribute("data-pending", n);
            }
            function tileKey(layer, e) { return L.stamp(layer) + ":" + layer._tileCoordsToKey(e.coords); }
            function watch(layer) {
                if (!(layer instanceof L.GridLayer) || layer._flairProgress) { return; }
                layer._flairProgress = true;
                for (var k in layer._tiles) {  // tiles already asked for before this control came
                    if (!layer._tiles[k].loaded) { pending[L.stamp(layer) + ":" + k] = true; }
                }
                layer.on("tileloadstart", function(e) { pending[tileKey(layer, e)] = true; show(); });
                layer.on("tileload tileerror tileabort tileunload", function(e) {
                    delete pending[tileKey(layer, e)]; show();
                });
                layer.on("remove", function() {
                    var head = L.stamp(layer) + ":";
                    Object.keys(pending).forEach(function(k) { if (k.indexOf(head) === 0) { delete pending[k]; } });
                    show();
                });
            }
            map.eachLayer(watch);
            map.on("layeradd", function(e) { watch(e.layer); });
            show();
        })();
        {% endmacro %}
    """)


def add_tile_progress(m: folium.Map) -> TileProgress:
    """Add the loading counter; it watches the tile layers already on the map and those added later."""
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


# -- colour scales of the continuous layers --------------------------------------------------------------
# The tile server draws them; these say how. tests/test_colour_scales.py checks each against the server's own
# constants and against rio-tiler's rendering of known values.
ELEVATION_CMAP = "viridis"  # flair_viz.server.factory: the elevation preset's colormap
ELEVATION_LEVELS = (0, 60)  # flair_viz.server.factory.ELEVATION_RESCALE: band levels stretched over the ramp
UNCERTAINTY_CMAP = "magma"  # flair_viz.predict.tiles.UNCERTAINTY_CMAP: the entropy and margin layers


@dataclass(frozen=True)
class ColourScale:
    """A continuous layer's legend: the ramp, values from ``low`` to ``high`` in ``unit``, and what they mean
    (``low_word``/``high_word`` on the map, ``low_means``/``high_means`` and ``note`` in the page's legend)."""

    title: str
    cmap: str  # rio-tiler colormap name, as the tile server uses it
    low: float
    high: float
    unit: str
    ticks: tuple[float, ...]
    low_word: str
    high_word: str
    low_means: str
    high_means: str
    note: str = ""
    high_open: bool = False  # values past ``high`` are drawn with its colour: its tick says "≥"

    def colour(self, value: float) -> str:
        """The ``#rrggbb`` the tile server draws ``value`` with (clipped to the scale's ends)."""
        from rio_tiler.colormap import cmap

        t = min(1.0, max(0.0, (value - self.low) / (self.high - self.low)))
        r, g, b, _ = cmap.get(self.cmap)[round(t * 255)]
        return f"#{int(r):02x}{int(g):02x}{int(b):02x}"

    def tick_label(self, value: float) -> str:
        text = f"{value:g}{(' ' + self.unit) if self.unit else ''}"
        return f"≥ {text}" if self.high_open and value >= self.high else text


def elevation_scale() -> ColourScale:
    """The Elevation band preset: height above ground (``docs/elevation.md``): the band holds
    :data:`flair_viz.core.elevation.SCALE` levels per metre, and the server stretches levels 0..60 over viridis."""
    low, high = (level / elevation.SCALE for level in ELEVATION_LEVELS)
    step = 2.0 if high <= 20 else 5.0
    ticks = tuple(round(low + i * step, 6) for i in range(int((high - low) / step) + 1))
    return ColourScale("Height above ground (elevation band)", ELEVATION_CMAP, low, high, "m", ticks,
                       "ground", "high", "the ground", f"{high:g} m and higher",
                       f"DSM − DTM; the band stores {elevation.SCALE:g} levels per metre (0.2 m each)", high_open=True)


def uncertainty_scale(layer: str) -> ColourScale:
    """The entropy or margin layer (:mod:`flair_viz.core.uncertainty`): both 0..1, bright = unsure."""
    ticks = (0.0, 0.25, 0.5, 0.75, 1.0)
    if layer == "entropy":
        return ColourScale("Uncertainty: entropy", UNCERTAINTY_CMAP, 0.0, 1.0, "", ticks, "sure", "unsure",
                           "sure: all the probability on one class",
                           "unsure: probability spread evenly over the model's classes",
                           "entropy of the class probabilities divided by log K, K the model's class count")
    return ColourScale("Uncertainty: margin", UNCERTAINTY_CMAP, 0.0, 1.0, "", ticks, "sure", "unsure",
                       "sure: one class clearly ahead of the next", "unsure: the two likeliest classes tie",
                       "1 − (top-1 − top-2 probability)")


def colour_scale_html(scale: ColourScale, samples: int = 16, compact: bool = False) -> str:
    """A horizontal colour bar with its ticks, units and the meaning of both ends, as the layer draws it;
    ``compact`` (on a map): the title, the bar, the ticks and one word per end."""
    stops = ", ".join(f"{scale.colour(scale.low + (scale.high - scale.low) * i / (samples - 1))} "
                      f"{100 * i / (samples - 1):.1f}%" for i in range(samples))

    def tick(t: float) -> str:
        shift = "0" if t <= scale.low else "-100%" if t >= scale.high else "-50%"  # the end ticks stay inside
        return (f'<span style="position:absolute;left:{100 * (t - scale.low) / (scale.high - scale.low):.1f}%;'
                f'transform:translateX({shift});white-space:nowrap">{scale.tick_label(t)}</span>')

    ticks = scale.ticks[::2] if compact and len(scale.ticks) > 5 else scale.ticks  # a map's scale is narrow
    ticks = ticks if ticks[-1] == scale.ticks[-1] else (*ticks, scale.ticks[-1])
    low, high = (scale.low_word, scale.high_word) if compact else (scale.low_means, scale.high_means)
    note = f'<div style="color:#555">{scale.note}</div>' if scale.note and not compact else ""
    width = "min-width:170px;max-width:200px" if compact else "min-width:240px;max-width:340px"
    return (f'<div class="flair-colour-scale" style="font:{11 if compact else 12}px sans-serif;{width}">'
            f"<b>{scale.title}</b>"
            f'<div style="height:10px;margin-top:3px;border:1px solid #888;'
            f'background:linear-gradient(to right, {stops})"></div>'
            f'<div style="position:relative;height:15px">{"".join(tick(t) for t in ticks)}</div>'
            f'<div style="display:flex;justify-content:space-between;gap:12px;color:#333">'
            f'<span>◀ {low}</span><span style="text-align:right">{high} ▶</span></div>'
            f"{note}</div>")


class ColourScaleControl(folium.MacroElement):
    """A colour scale drawn on the map itself (bottom right), so a screenshot of the map still says what it shows."""

    _template = Template("""
        {% macro script(this, kwargs) %}
        (function() {
            var box = L.control({position: "bottomright"});
            box.onAdd = function() {
                var div = L.DomUtil.create("div", "flair-colour-scale-control");
                div.style.cssText = "background:rgba(255,255,255,.92);padding:4px 8px;border-radius:4px";
                div.innerHTML = {{ this.html|tojson }};
                L.DomEvent.disableClickPropagation(div);
                return div;
            };
            box.addTo({{ this._parent.get_name() }});
        })();
        {% endmacro %}
    """)

    def __init__(self, html: str) -> None:
        super().__init__()
        self._name = "ColourScaleControl"
        self.html = html


def add_colour_scale(m: folium.Map, scale: ColourScale) -> ColourScaleControl:
    """Put ``scale``'s colour bar on the map, compact (the page's legend says more)."""
    control = ColourScaleControl(colour_scale_html(scale, compact=True))
    control.add_to(m)
    return control
