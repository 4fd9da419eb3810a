"""Per-territory change as a GeoPackage that QGIS opens: one row per region, with its polygon.

For one change (``flair-viz change --regions``) a row holds the region's area, changed hectares and ZAN
flows, and the from-to hectares of every class pair present in any region (``<before>_to_<after>_ha``
columns, FLAIR-1 keys). For a series (``flair-viz trend --regions``) it holds the flows of each interval
(``artificialisation_ha_2016_2019`` ...), and their sums over the series. The polygons are those the
pixels were counted in (repaired if they were invalid, in the raster CRS). Pixels outside every region
are not a polygon: they stay in the CSV's "outside" row.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from flair_viz.change.compute import ChangeResult
from flair_viz.change.grouping import N
from flair_viz.change.regions import Regions
from flair_viz.change.trend import Trend
from flair_viz.core import atomic, classes
from flair_viz.core.errors import InvalidInput

FLOWS = ("artificialisation_ha", "deartificialisation_ha", "net_artificialisation_ha", "changed_ha")
KEYS = ["nodata"] + [c.key for c in classes.FLAIR1_CLASSES]


def _frame(regions: Regions, rows: list[dict[str, Any]], crs: Any) -> Any:
    import geopandas as gpd

    return gpd.GeoDataFrame(rows, geometry=list(regions.geometries), crs=crs)


def change_frame(result: ChangeResult) -> Any:
    """One row per region of a change: area, flows and the from-to hectares of the pairs present."""
    if result.regions is None or result.region_counts is None:
        raise InvalidInput("This change has no regions", "give --regions FILE (communes, EPCI or any polygons)")
    counts = result.region_counts[1:]  # row 0 = outside every region
    present = [(b, a) for b in range(1, N) for a in range(1, N) if counts[:, b, a].any()]
    rows = []
    for r, name in zip(result.region_table(), result.regions.names):
        i = r["region"]
        rows.append({"name": name, "area_ha": r["area_ha"], **{k: r[k] for k in FLOWS},
                     **{f"{KEYS[b]}_to_{KEYS[a]}_ha": float(result.region_counts[i, b, a] * result.ha_per_pixel)
                        for b, a in present}})
    return _frame(result.regions, rows, result.alignment.crs)


def _suffix(label: str) -> str:
    return re.sub(r"[^0-9A-Za-z]+", "_", label).strip("_")


def trend_frame(trend: Trend) -> Any:
    """One row per region of a series: each flow per interval (one column each), and over the series."""
    if trend.regions is None:
        raise InvalidInput("This trend has no regions", "give --regions FILE (communes, EPCI or any polygons)")
    table = trend.table()
    rows = []
    for i, name in enumerate(trend.regions.names, start=1):
        mine = table[table["region_id"] == i]
        row: dict[str, Any] = {"name": name}
        for _, r in mine.iterrows():
            for k in FLOWS:
                row[f"{k}_{_suffix(r['label'])}"] = float(r[k])
        for k in FLOWS:
            row[f"{k}_total"] = float(mine[k].sum())
        rows.append(row)
    return _frame(trend.regions, rows, trend.intervals[0].alignment.crs)


def write_gpkg(frame: Any, path: str | os.PathLike[str], layer: str = "regions") -> Path:
    """Write the frame as a GeoPackage layer, atomically."""
    with atomic.atomic_path(path) as tmp:
        frame.to_file(tmp, driver="GPKG", layer=layer)
    return Path(path)
