"""Corrections as FLAIR annotations: ``MSK_<id>.tif`` masks, 512 px at 0.2 m, on the FLAIR patch grid.

Each image's grid is the one annotation uses (:mod:`flair_viz.annotate.grid`: 102.4 m cells from the
image's upper-left corner). Every cell a correction touches becomes one mask: uint8 FLAIR-1 values,
0 = unlabelled (nodata 0), EPSG:2154, a 0.2 m north-up transform whose corner is the cell's, so for a
FLAIR patch the mask lies exactly on the image. Later corrections paint over earlier ones. Masks are
written atomically, so ready-made files are never half-written.
"""

from __future__ import annotations

import os
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import rasterio.features
from rasterio.transform import from_origin

from flair_viz.annotate.grid import FLAIR_PATCH_PX, FLAIR_RES_M, Grid, cell_id
from flair_viz.core import atomic, raster
from flair_viz.core.catalog import Catalog
from flair_viz.core.errors import InvalidInput
from flair_viz.correct.labels import assign_images

GRIDS: tuple[str, ...] = ("flair",)


def mask_profile(bounds: tuple[float, float, float, float], crs) -> dict:
    minx, _, _, maxy = bounds
    return {"driver": "GTiff", "width": FLAIR_PATCH_PX, "height": FLAIR_PATCH_PX, "count": 1, "dtype": "uint8",
            "crs": crs, "transform": from_origin(minx, maxy, FLAIR_RES_M, FLAIR_RES_M), "nodata": 0,
            "compress": "lzw", "tiled": True, "blockxsize": 256, "blockysize": 256}


def export_masks(corrections: gpd.GeoDataFrame, cat: Catalog, out: str | os.PathLike[str],
                 grid: str = "flair") -> list[Path]:
    """Write one FLAIR mask per grid cell that corrections touch; returns the files written."""
    if grid not in GRIDS:
        raise InvalidInput(f"Unknown grid {grid!r}", f"use --grid {' | '.join(GRIDS)}")
    folder = atomic.output_folder(out)
    written: list[Path] = []
    for ds_id, shapes in assign_images(corrections, cat).items():
        info = raster.describe(cat.get(ds_id).path)
        g = Grid.for_scene(info.transform, info.width, info.height, info.crs)
        geoms = shapes.to_crs(info.crs) if info.crs and not shapes.crs.equals(info.crs) else shapes
        pairs = [(geom, int(c)) for geom, c in zip(geoms.geometry, geoms["class"])]
        cells = sorted({rc for geom in geoms.geometry for rc in g.cells_covering(geom)})
        for r, c in cells:
            profile = mask_profile(g.bounds(r, c), info.crs)
            data = rasterio.features.rasterize(pairs, out_shape=(FLAIR_PATCH_PX, FLAIR_PATCH_PX),
                                               transform=profile["transform"], fill=0, dtype="uint8")
            if not np.any(data):
                continue  # the shape only grazes the cell: no pixel centre inside
            path = folder / f"MSK_{cell_id(ds_id, r, c)}.tif"
            with atomic.atomic_path(path) as tmp:
                with rasterio.open(tmp, "w", **profile) as dst:
                    dst.write(data, 1)
            written.append(path)
    return written
