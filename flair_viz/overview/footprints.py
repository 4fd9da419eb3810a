"""Patch footprints as flat arrays (one entry per aerial patch), and which patch a map click hits.

Arrays, not objects: a tile of the overview tests 100,000 bounding boxes in a few vectorised numpy
comparisons. Footprints are the patch index's EPSG:2154 bounds; for drawing they are also kept as the
Web Mercator bounding box of their four corners (a FLAIR patch is 102.4 m, so the rotation between the
two projections moves a corner by at most a few metres at France's edges).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyproj import Transformer

from flair_viz.core import stack
from flair_viz.core.index import PATCH_COLUMNS, patch_table

_TO_MERCATOR = Transformer.from_crs("EPSG:2154", "EPSG:3857", always_xy=True)
_FROM_LONLAT = Transformer.from_crs("EPSG:4326", "EPSG:2154", always_xy=True)
_TO_LONLAT = Transformer.from_crs("EPSG:2154", "EPSG:4326", always_xy=True)


@dataclass(frozen=True)
class Footprints:
    """One row per aerial patch: ``table`` (id, domain, zone, vintage, patch, L93 bounds) and drawing arrays."""

    table: pd.DataFrame
    l93: np.ndarray  # (n, 4) left, bottom, right, top in EPSG:2154
    mercator: np.ndarray  # (n, 4) the same footprints' bounding boxes in EPSG:3857

    def __len__(self) -> int:
        return len(self.table)

    def bounds_wgs84(self, rows: np.ndarray | None = None) -> tuple[float, float, float, float] | None:
        """(west, south, east, north) around the chosen footprints (all by default); None if there are none."""
        b = self.l93 if rows is None else self.l93[np.asarray(rows)]
        if not len(b):
            return None
        lon, lat = _TO_LONLAT.transform(np.r_[b[:, 0], b[:, 2], b[:, 0], b[:, 2]],
                                        np.r_[b[:, 1], b[:, 1], b[:, 3], b[:, 3]])
        return float(np.min(lon)), float(np.min(lat)), float(np.max(lon)), float(np.max(lat))


def from_table(table: pd.DataFrame) -> Footprints:
    """Footprints of the ``image`` rows of a patch table with finite bounds, in the table's order."""
    t = table[(table["role"] == "image")].copy()
    l93 = t[["left", "bottom", "right", "top"]].to_numpy(dtype=np.float64).reshape(-1, 4)
    ok = np.isfinite(l93).all(axis=1)
    t, l93 = t[ok].reset_index(drop=True), l93[ok]
    xs, ys = _TO_MERCATOR.transform(np.c_[l93[:, 0], l93[:, 2], l93[:, 0], l93[:, 2]],
                                    np.c_[l93[:, 1], l93[:, 1], l93[:, 3], l93[:, 3]])
    xs, ys = np.asarray(xs).reshape(-1, 4), np.asarray(ys).reshape(-1, 4)
    mercator = np.c_[xs.min(axis=1), ys.min(axis=1), xs.max(axis=1), ys.max(axis=1)] if len(t) else np.zeros((0, 4))
    return Footprints(t, l93, mercator)


def footprints(catalog) -> Footprints:
    """The catalog's aerial patch footprints (from ``core.index.patch_table``), then one per RGB dalle of each
    ``[[stack]]`` image (a BD ORTHO delivery has no patches: its dalles are what was delivered)."""
    return from_table(pd.concat([patch_table(catalog), stack_dalle_table(catalog)], ignore_index=True))


def stack_dalle_table(catalog) -> pd.DataFrame:
    """One row per RGB dalle of every stack image: the stack's ID (a click opens the stack), no patch number."""
    t = catalog.table()
    rows = [{"id": ds.id, "role": "image", "domain": ds.domain, "zone": ds.zone, "vintage": ds.vintage, "patch": None,
             "left": b[0], "bottom": b[1], "right": b[2], "top": b[3]}
            for ds in map(catalog.get, t.loc[~t["indexed"].astype(bool) & (t["role"] == "image"), "id"])
            for _, b in stack.dalles(ds, "rgb")]
    return pd.DataFrame(rows, columns=PATCH_COLUMNS)


def patch_at(fp: Footprints, lon: float, lat: float, tolerance_m: float = 0.0) -> int | None:
    """Row of the footprint under a map click (lon/lat), or of the nearest one within ``tolerance_m``.

    The test is done on the exact EPSG:2154 footprints; the tolerance lets a click on a patch drawn as
    a dot at a low zoom (where a 102 m patch is smaller than a pixel) still find it.
    """
    if not len(fp):
        return None
    x, y = _FROM_LONLAT.transform(lon, lat)
    b = fp.l93
    dx = np.maximum(np.maximum(b[:, 0] - x, x - b[:, 2]), 0.0)  # 0 inside, else the distance to the box
    dy = np.maximum(np.maximum(b[:, 1] - y, y - b[:, 3]), 0.0)
    dist = np.hypot(dx, dy)
    inside = np.flatnonzero(dist == 0)
    if len(inside):
        return int(inside[-1])  # the last drawn is the one on top
    best = int(np.argmin(dist))
    return best if dist[best] <= tolerance_m else None
