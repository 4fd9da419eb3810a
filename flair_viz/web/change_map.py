"""The Change page's map pieces: the swipe map of a pair, the change layer's URL template, the flow legend.

They belong to the UI, not to the change engine (which never imports ``flair_viz.web``): the engine
owns the flow colours, this module only shows them.
"""

from __future__ import annotations

import folium

from flair_viz.change.grouping import FLOW_COLORS, FLOW_NAMES
from flair_viz.core.catalog import Catalog, Dataset
from flair_viz.web import maps as webmap
from flair_viz.web.urls import tile_url


def change_tile_url(before_id: str, after_id: str, mode: str = "flow", base_url: str | None = None) -> str:
    """Leaflet URL template of the change layer of a pair (served by :mod:`flair_viz.change.tiles`)."""
    return tile_url(f"/change/{before_id}/{after_id}", base_url, mode=mode)


def flow_legend_html() -> str:
    """Legend of the flow mode, in the colours the tiles use."""
    rows = "".join(
        f'<div style="display:flex;align-items:center;gap:6px;font-size:0.8rem;line-height:1.4">'
        f'<span style="display:inline-block;width:14px;height:14px;background:rgb{FLOW_COLORS[k][:3]};'
        f'border:1px solid #888"></span>{name}</div>' for k, name in FLOW_NAMES.items())
    return f'<div class="flair-legend">{rows}</div>'


def pair_map(cat: Catalog, before: Dataset, after: Dataset, base: str, mode: str = "flow",
             opacity: float = 0.6) -> folium.Map:
    """The aerial image under a swipe between the two dates, with the change layer on top."""
    bounds = webmap.dataset_bounds_wgs84(before)
    image = cat.for_patch(before.patch, "image") if before.patch else None
    m = webmap.make_map(bounds, min_zoom=webmap.floor_zoom(before, after, image))
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
