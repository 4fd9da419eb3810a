"""The overview map: every patch footprint of the catalog on one map, as raster tiles, not DOM elements.

Why raster tiles: a FLAIR release has 77,000 to 240,000 patches; 100,000 Leaflet rectangles freeze a
browser, while a 256 px PNG tile costs the same whatever the number of patches under it. Footprints
come from the catalog's patch index (``core.index.patch_table``) and are coloured by domain, by date or
by a per-patch score read from the metrics store (never recomputed here).

Submodules, one job each: ``footprints`` (the footprint arrays and the click lookup), ``colours`` (what
colour each footprint gets, and the legend), ``render`` (footprints → RGBA tile → PNG), ``tiles`` (the
tile server's router). Submodules import each other directly, never this facade.
"""

from flair_viz.overview.colours import COLOR_BY, Colouring, Legend, colouring, patch_values
from flair_viz.overview.footprints import Footprints, footprints, patch_at
from flair_viz.overview.render import render_tile, tile_png

__all__ = ["COLOR_BY", "Colouring", "Footprints", "Legend", "colouring", "footprints", "patch_at", "patch_values",
           "render_tile", "tile_png"]
