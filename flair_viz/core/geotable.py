"""Tables of EPSG:2154 shapes that people edit: selections, corrections, ranked candidates.

What the selections store and the corrections store share: the file formats a table is written in, the
one atomic writer, the timestamp they stamp rows with, and how an edited table becomes a list of changes.
They live here, below both features, so neither borrows from the other.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import geopandas as gpd
import pandas as pd
import shapely

from flair_viz.core import atomic
from flair_viz.core.errors import InvalidInput

CRS = "EPSG:2154"
FORMATS: dict[str, str] = {".gpkg": "GPKG", ".geojson": "GeoJSON", ".json": "GeoJSON", ".csv": "CSV"}


def now() -> str:
    """UTC time as ISO text: it survives GPKG, GeoJSON and CSV alike, unlike native datetime fields."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def write_table(gdf: gpd.GeoDataFrame, path: str | os.PathLike[str], fmt: str | None = None, *,
                layer: str) -> Path:
    """Atomically write any EPSG:2154 table as GPKG, GeoJSON or CSV with WKT (``fmt``, else from the suffix):
    the final name holds either the old file or the complete new one."""
    path = Path(path)
    fmt = fmt or FORMATS.get(path.suffix.lower())
    if fmt not in set(FORMATS.values()):
        raise InvalidInput(f"Cannot export to {path.name}: unknown format", f"use a name ending in {', '.join(FORMATS)}")
    if gdf.crs is None or not gdf.crs.equals(CRS):
        gdf = gdf.set_crs(CRS) if gdf.crs is None else gdf.to_crs(CRS)
    with atomic.atomic_path(path) as tmp:
        if fmt == "CSV":
            df = pd.DataFrame(gdf.drop(columns=gdf.geometry.name))
            df["geometry"] = shapely.to_wkt(gdf.geometry.values, rounding_precision=-1)
            df.to_csv(tmp, index=False)
        else:
            gdf.to_file(tmp, driver=fmt, layer=layer, engine="pyogrio")
    return path


def table_edits(before: pd.DataFrame, after: pd.DataFrame,
                editable: tuple[str, ...]) -> tuple[dict[str, dict[str, object]], list[str]]:
    """What a person changed in an edited table of rows keyed by ``id``: the ``editable`` cells that differ
    per row, and the rows whose ``remove`` box is ticked (their other edits are dropped)."""
    b, a = before.set_index("id"), after.set_index("id")
    gone = a.index[a["remove"].fillna(False).astype(bool)].tolist() if "remove" in a else []
    changes: dict[str, dict[str, object]] = {}
    for rid in a.index.intersection(b.index):
        diff = {k: a.loc[rid, k] for k in editable if k in a and a.loc[rid, k] != b.loc[rid, k]}
        if diff and rid not in gone:
            changes[rid] = diff
    return changes, gone
