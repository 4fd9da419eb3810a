"""The Change page's map pieces: the swipe map of a pair, the swipe map of a change from predictions,
the change layer's URL template, the flow legend.

They belong to the UI, not to the change engine (which never imports ``flair_viz.web``): the engine
owns the flow colours, this module only shows them.

A change from predictions is drawn over the two aerial images (tiles by catalog ID, as everywhere).
Its sure and uncertain change come from the ``confidence.tif`` the command wrote in the user's data
folder. That file is no catalog dataset, and is not made one: registering it would write every
threshold and model the page tries into the user's catalog (the tracked demo catalog in the demo),
and the tile server would draw its codes 1 and 2 in the class palette. So the page reprojects it
to Web Mercator and lays it on the map as two image overlays (PNG inside the page, no tile
server request); the tile server still opens catalog datasets by ID only.
"""

from __future__ import annotations

import os

import folium
import numpy as np
import rasterio
from affine import Affine
from rasterio.warp import Resampling, calculate_default_transform, reproject, transform_bounds

from flair_viz.change.grouping import FLOW_COLORS, FLOW_NAMES
from flair_viz.change.predicted import CONFIDENCE_CODES, CONFIDENCE_COLORS
from flair_viz.core.catalog import Catalog, Dataset
from flair_viz.web import maps as webmap
from flair_viz.web.urls import tile_url


def change_tile_url(before_id: str, after_id: str, mode: str = "flow", base_url: str | None = None) -> str:
    """Leaflet URL template of the change layer of a pair (served by :mod:`flair_viz.change.tiles`)."""
    return tile_url(f"/change/{before_id}/{after_id}", base_url, mode=mode)


def _legend_html(items: list[tuple[tuple[int, ...], str]]) -> str:
    """A legend of (RGB, name) swatches, in the look of :func:`flair_viz.web.maps.legend_html`."""
    rows = "".join(
        f'<div style="display:flex;align-items:center;gap:6px;font-size:0.8rem;line-height:1.4">'
        f'<span style="display:inline-block;width:14px;height:14px;background:rgb{tuple(rgb[:3])};'
        f'border:1px solid #888"></span>{name}</div>' for rgb, name in items)
    return f'<div class="flair-legend">{rows}</div>'


def flow_legend_html() -> str:
    """Legend of the flow mode, in the colours the tiles use."""
    return _legend_html([(FLOW_COLORS[k], name) for k, name in FLOW_NAMES.items()])


ZOOM_SNAP = 0.25  # fractional zoom: a long strip fills the map instead of stopping a whole zoom level short


def fitted_map(bounds: webmap.Bounds, min_zoom: int) -> folium.Map:
    """A map fitted to ``bounds`` at a fractional zoom, so a thin strip (the Gers series) fills its height
    instead of the next coarser whole zoom level, which showed it at half size."""
    m = webmap.make_map(bounds, min_zoom=min_zoom)
    m.options["zoom_snap"] = ZOOM_SNAP
    m.options["zoom_delta"] = 0.5
    return m


def pair_map(cat: Catalog, before: Dataset, after: Dataset, base: str, mode: str = "flow",
             opacity: float = 0.6) -> folium.Map:
    """The aerial image under a swipe between the two dates, with the change layer on top."""
    bounds = webmap.dataset_bounds_wgs84(before)
    image = cat.for_patch(before.patch, "image") if before.patch else None
    m = fitted_map(bounds, webmap.floor_zoom(before, after, image))
    if image is not None:
        webmap.tile_layer(webmap.dataset_tile_url(image.id, base), f"Aerial {image.id}", bounds,
                          overlay=False).add_to(m)
    left = webmap.tile_layer(webmap.dataset_tile_url(before.id, base), f"Before: {before.vintage or before.id}",
                             bounds, opacity)
    right = webmap.tile_layer(webmap.dataset_tile_url(after.id, base), f"After: {after.vintage or after.id}",
                              bounds, opacity)
    webmap.add_side_by_side(m, left, right)
    webmap.tile_layer(change_tile_url(before.id, after.id, mode, base), f"Change ({mode})", bounds).add_to(m)
    webmap.add_layer_control(m)
    return m


WEB_MERCATOR = "EPSG:3857"
MAX_OVERLAY_PX = 2048  # longest side of a confidence overlay; a patch (512 px) is drawn at full resolution


def confidence_overlays(path: str | os.PathLike[str], max_px: int = MAX_OVERLAY_PX
                        ) -> tuple[webmap.Bounds, dict[int, np.ndarray]]:
    """The confidence COG on a Web Mercator grid: its lon/lat bounds and one (H, W, 4) RGBA array per code
    (1 sure change, 2 uncertain change), transparent elsewhere.

    Leaflet stretches an image overlay linearly between its corners in Web Mercator, so the grid must be
    Web Mercator for the pixels to land where they are. Each code is warped as its own 0/1 mask: nearest at
    full resolution, and ``max`` when the grid is coarsened to ``max_px``, so one changed pixel is not lost.
    """
    with rasterio.open(path) as src:
        codes = src.read(1)
        transform, width, height = calculate_default_transform(src.crs, WEB_MERCATOR, src.width, src.height,
                                                               *src.bounds)
        scale = max(width, height) / max_px
        if scale > 1:  # the same extent, on fewer and larger pixels
            w2, h2 = max(1, round(width / scale)), max(1, round(height / scale))
            transform, width, height = transform @ Affine.scale(width / w2, height / h2), w2, h2
        layers = {}
        for code in CONFIDENCE_CODES:
            dst = np.zeros((height, width), dtype=np.uint8)
            reproject((codes == code).astype(np.uint8), dst, src_transform=src.transform, src_crs=src.crs,
                      dst_transform=transform, dst_crs=WEB_MERCATOR, src_nodata=None, dst_nodata=0,
                      resampling=Resampling.max if scale > 1 else Resampling.nearest)
            rgba = np.zeros((height, width, 4), dtype=np.uint8)
            rgba[dst > 0] = CONFIDENCE_COLORS[code]
            layers[code] = rgba
    west, north = transform.c, transform.f
    east, south = west + transform.a * width, north + transform.e * height
    return tuple(transform_bounds(WEB_MERCATOR, "EPSG:4326", west, south, east, north)), layers  # type: ignore[return-value]


CONFIDENCE_LAYER_NAMES = {1: "Sure change (red)", 2: "Uncertain change (amber)"}
PIXELATED = "<style>.flair-pixelated{image-rendering:pixelated;image-rendering:crisp-edges}</style>"


Overlays = tuple[webmap.Bounds, dict[int, np.ndarray]]  # what confidence_overlays returns


def predictions_map(before: Dataset, after: Dataset, base: str,
                    confidence: str | os.PathLike[str] | Overlays | None = None) -> folium.Map:
    """The two aerial images under a before/after swipe (left the earlier date, right the later one) and, once
    computed, the sure and uncertain change of the model as two layers on top, each one toggled in the layer box.

    ``confidence`` is the confidence COG, or its :func:`confidence_overlays` already computed (a page caches them)."""
    bounds = webmap.dataset_bounds_wgs84(before)
    m = fitted_map(bounds, webmap.floor_zoom(before, after))
    left = webmap.tile_layer(webmap.dataset_tile_url(before.id, base), f"Before: {before.vintage or before.id}",
                             bounds)
    right = webmap.tile_layer(webmap.dataset_tile_url(after.id, base), f"After: {after.vintage or after.id}",
                              bounds)
    webmap.add_side_by_side(m, left, right)
    if confidence is not None:
        overlays = confidence if isinstance(confidence, tuple) else confidence_overlays(confidence)
        (west, south, east, north), layers = overlays
        m.get_root().header.add_child(folium.Element(PIXELATED))
        for code, rgba in layers.items():
            folium.raster_layers.ImageOverlay(rgba, bounds=[[south, west], [north, east]],
                                              name=CONFIDENCE_LAYER_NAMES[code], overlay=True, control=True,
                                              opacity=0.75, className="flair-pixelated").add_to(m)
    webmap.add_layer_control(m)
    return m


def confidence_legend_html() -> str:
    """Legend of the two change layers, in the colours the overlays use."""
    return _legend_html([(CONFIDENCE_COLORS[k], name) for k, name in CONFIDENCE_CODES.items()])
