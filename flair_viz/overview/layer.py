"""The overview layer of one catalog: its footprints and colours, cached, shared by the tile server and the page.

Footprints are built once per catalog object (``CatalogStore`` hands out a new one when the file changes);
colours once per (catalog, metrics-store stamp, choice). The tile server and the Overview page's legend
call the same function, so the legend always describes the tiles.
"""

from __future__ import annotations

import os

from flair_viz.core.catalog import Catalog
from flair_viz.core.lru import LRU
from flair_viz.core.stamps import file_stamp
from flair_viz.metrics.store import MetricsTable, default_store
from flair_viz.overview.colours import Colouring, colouring
from flair_viz.overview.footprints import Footprints, footprints

_footprints = LRU(4)
_colourings = LRU(32)


def catalog_footprints(catalog: Catalog) -> Footprints:
    """Footprints of this catalog object (a reloaded catalog is a new object, so a new entry)."""
    hit = _footprints.get(id(catalog))
    if hit is not None and hit[0] is catalog:
        return hit[1]
    fp = footprints(catalog)
    _footprints.put(id(catalog), (catalog, fp))
    return fp


def _store_key(path: os.PathLike[str] | str) -> tuple:
    try:
        s = file_stamp(path)
        return s["path"], s["mtime_ns"], s["size"]
    except FileNotFoundError:
        return str(path), None, None


def catalog_colouring(catalog: Catalog, color_by: str, model: str | None = None, protocol: str = "flair1",
                      cls: int | None = None, truth_class: int | None = None, pred_class: int | None = None,
                      store: os.PathLike[str] | str | None = None) -> tuple[Footprints, Colouring]:
    """Footprints and their colours, scores read from the metrics store (``$FLAIR_VIZ_METRICS`` by default)."""
    fp = catalog_footprints(catalog)
    store = store or default_store()
    key = (id(catalog), _store_key(store) if color_by not in ("domain", "date") else None, color_by, model,
           protocol, cls, truth_class, pred_class)
    hit = _colourings.get(key)
    if hit is not None and hit[0] is catalog:
        return fp, hit[1]
    table = MetricsTable.read(store) if color_by not in ("domain", "date") else None
    c = colouring(fp, color_by, table, model, protocol, cls, truth_class, pred_class)
    _colourings.put(key, (catalog, c))
    return fp, c
