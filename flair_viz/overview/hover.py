"""What the overview says about the footprint under the pointer: patch, zone, and the value that colours it.

Why a lookup and not vector tooltips: the footprints are raster tiles (100,000 Leaflet shapes would freeze
the browser), so a tooltip asks the tile server which footprint lies under a point, with the same
tolerance a click gets at that zoom (a patch drawn as a dot, ``render.dot_px``, is found within the dot).
"""

from __future__ import annotations

import math

import numpy as np

from flair_viz.overview.colours import Colouring
from flair_viz.overview.footprints import Footprints, patch_at
from flair_viz.overview.render import dot_px

EARTH_M_PER_PX_Z0 = 156543.03392  # Web Mercator metres per 256 px tile pixel at zoom 0, at the equator
SCORE_NAMES = {"miou": "mIoU", "oa": "Overall accuracy", "iou": "IoU", "confusion": "Confused pixels"}


def metres_per_pixel(lat: float, zoom: float) -> float:
    """Ground metres one screen pixel covers at ``lat`` and ``zoom`` (Web Mercator, 256 px tiles)."""
    return EARTH_M_PER_PX_Z0 * math.cos(math.radians(lat)) / 2 ** zoom


def patch_near(fp: Footprints, lon: float, lat: float, zoom: float | None) -> int | None:
    """Row of the footprint under a point, or of the nearest one drawn as a dot that covers it at ``zoom``."""
    tolerance = dot_px(zoom) * metres_per_pixel(lat, zoom) if zoom is not None else 0.0
    return patch_at(fp, lon, lat, tolerance)


def _value_text(colouring: Colouring, color_by: str, row: int, fp: Footprints) -> tuple[str, float | None]:
    """The colouring's value of one footprint as the page words it, and the raw score (None if not a score)."""
    t = fp.table
    if color_by == "domain":
        return f"domain {t['domain'].iloc[row] or 'unknown'}", None
    if color_by == "date":
        return f"year {str(t['vintage'].iloc[row] or 'unknown')[:4]}", None
    v = float(colouring.values[row]) if len(colouring.values) > row else float("nan")
    name = SCORE_NAMES.get(color_by, color_by)
    if not np.isfinite(v):
        return f"{name}: n/a (no stored score, or the class is absent)", None
    return (f"{name} {int(v):,} px" if color_by == "confusion" else f"{name} {v:.3f}"), v


def describe(fp: Footprints, colouring: Colouring, color_by: str, row: int,
             score_of: Colouring | None = None) -> dict:
    """The tooltip of footprint ``row``: its dataset ID, patch, domain, zone, the value that colours it, a text.

    ``score_of``, a mIoU colouring, adds the patch's mIoU where the map is coloured by domain or year, so the
    tooltip always gives a score when the metrics store has one."""
    t = fp.table
    domain, zone = str(t["domain"].iloc[row] or ""), str(t["zone"].iloc[row] or "")
    value, score = _value_text(colouring, color_by, row, fp)
    if score_of is not None and color_by in ("domain", "date"):
        extra, score = _value_text(score_of, "miou", row, fp)
        value = f"{value} · {extra}"
    place = " / ".join(p for p in (domain, zone) if p) or "no zone"
    patch = str(t["patch"].iloc[row] or "")
    return {"id": str(t["id"].iloc[row]), "patch": patch, "domain": domain, "zone": zone, "score": score,
            "value": value, "text": f"Patch {patch} · {place} · {value}"}
