"""The outline of metropolitan France under the overview's footprints, from Natural Earth via npm.

Why: at a national zoom a footprint layer alone is dots on grey; the country's outline says where they
are. The geometry is Natural Earth's 1:10m countries (public domain), as the npm package ``world-atlas``
2.0.2 (ISC) ships it in TopoJSON; ``scripts/install.sh`` copies that file into ``static/vendor/world-atlas/``
at install time, so nothing is fetched at run time. Decoding TopoJSON is a few lines (delta-encoded,
quantised arcs), done here once per process rather than with another JavaScript library. A missing file
gives ``None``: the page then draws the footprints without an outline and says why.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import shapely
from shapely.geometry import mapping

from flair_viz.core.config import REPO_ROOT

WORLD_ATLAS_VERSION = "2.0.2"
OUTLINE_FILE = REPO_ROOT / "static" / "vendor" / "world-atlas" / "countries-10m.json"
FRANCE_ISO = "250"  # ISO 3166-1 numeric, the feature id in world-atlas
METROPOLE = (-5.5, 41.0, 10.0, 51.5)  # lon/lat box of mainland France and Corsica (FLAIR covers these only)
SIMPLIFY_DEG = 0.002  # about 200 m: finer than a pixel at a national zoom, a few thousand vertices in all


def decode_arcs(topology: dict) -> list[np.ndarray]:
    """Every arc of a TopoJSON topology as an ``(n, 2)`` lon/lat array (quantised arcs are delta-encoded)."""
    transform = topology.get("transform")
    arcs = []
    for arc in topology["arcs"]:
        a = np.asarray(arc, dtype=np.float64).reshape(-1, 2)
        if transform:
            a = np.cumsum(a, axis=0) * transform["scale"] + transform["translate"]
        arcs.append(a)
    return arcs


def _ring(arcs: list[np.ndarray], indexes: list[int]) -> np.ndarray:
    """A ring from arc indexes; a negative index ``~i`` is arc ``i`` reversed; shared end points are kept once."""
    parts = []
    for k, i in enumerate(indexes):
        a = arcs[i] if i >= 0 else arcs[~i][::-1]
        parts.append(a if k == 0 else a[1:])
    return np.concatenate(parts) if parts else np.zeros((0, 2))


def decode_geometry(topology: dict, geometry: dict, arcs: list[np.ndarray] | None = None):
    """A TopoJSON ``Polygon`` or ``MultiPolygon`` as a shapely geometry."""
    arcs = decode_arcs(topology) if arcs is None else arcs
    polys = geometry["arcs"] if geometry["type"] == "MultiPolygon" else [geometry["arcs"]]
    return shapely.MultiPolygon([shapely.Polygon(_ring(arcs, rings[0]), [_ring(arcs, r) for r in rings[1:]])
                                 for rings in polys])


def country(topology: dict, iso: str = FRANCE_ISO, box: tuple[float, float, float, float] | None = METROPOLE):
    """A country's shape from a world-atlas topology (only the parts inside ``box``), or None if it is absent."""
    geoms = [g for g in topology["objects"]["countries"]["geometries"] if str(g.get("id")) == iso]
    if not geoms:
        return None
    shape = decode_geometry(topology, geoms[0])
    if box is not None:
        shape = shapely.MultiPolygon([p for p in shape.geoms if shapely.box(*box).contains(p.centroid)])
    return shape


def france_geojson(path: str | Path | None = None) -> dict | None:
    """Metropolitan France as a GeoJSON Feature (simplified for drawing), or None when the file (by default
    :data:`OUTLINE_FILE`) is missing or unreadable (the page then says so); decoded once per file version."""
    path = OUTLINE_FILE if path is None else path
    try:
        stamp = Path(path).stat().st_mtime_ns
    except OSError:
        return None
    return _france(str(path), stamp)


@lru_cache(maxsize=2)
def _france(path: str, stamp: int) -> dict | None:
    try:
        shape = country(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError, IndexError):  # a truncated or foreign file: no outline
        return None
    if shape is None or shape.is_empty:
        return None
    shape = shapely.simplify(shape, SIMPLIFY_DEG, preserve_topology=True)
    shape = shapely.transform(shape, lambda xy: np.round(xy, 4))  # 10 m: half the page's bytes
    return {"type": "Feature", "properties": {"name": "France (metropolitan)"}, "geometry": mapping(shape)}
