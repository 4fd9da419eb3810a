"""The one class-tile reader: a catalog class raster on a map tile, as FLAIR-1 values.

Live-prediction error layers, confusion highlights and change tiles all compare class rasters pixel
by pixel on the tile grid, so they must read them the same way: nearest neighbour (classes are never
averaged), values through the one LUT (:func:`flair_viz.core.classes.to_flair1`, honouring the
file's nodata), and 0 wherever rio-tiler's mask says there is no data (outside the raster, nodata).
A truncated file is an :class:`UnreadableRaster` naming the file, never GDAL's bare "Read failed".
"""

from __future__ import annotations

import numpy as np
from morecantile import tms as default_tms
from rasterio.errors import RasterioError
from rio_tiler.errors import TileOutsideBounds
from rio_tiler.io import Reader

from flair_viz.core import classes
from flair_viz.core.catalog import Dataset
from flair_viz.core.errors import RasterNotFound, UnreadableRaster, first_line
from flair_viz.core.raster import tile_source

TILE_SIZE = 256  # px side of a map tile: the web standard, served by every tile route and live prediction


def read_class_tile(ds: Dataset, tms_id: str, z: int, x: int, y: int, size: int = TILE_SIZE) -> np.ndarray | None:
    """(size, size) uint8 FLAIR-1 values of ``ds`` on tile z/x/y (0 = no data); None when the tile misses it."""
    if not ds.path.is_file():
        raise RasterNotFound(f"Dataset {ds.id}: file not found: {ds.path}",
                             "restore the file, or rescan the catalog if it moved")
    try:
        with Reader(tile_source(ds.path), tms=default_tms.get(tms_id)) as src:
            img = src.tile(x, y, z, tilesize=size, indexes=1, resampling_method="nearest",
                           reproject_method="nearest")
            nodata = src.dataset.nodata
    except TileOutsideBounds:
        return None
    except RasterioError as exc:
        raise UnreadableRaster(
            f"Cannot read {ds.path.name} (dataset {ds.id}): {first_line(exc)}",
            "the file is probably truncated or corrupt; re-export it, then check it with `flair-viz catalog validate`",
        ) from None
    values = classes.to_flair1(np.asarray(img.array.data[0]), ds.nomenclature, nodata)
    values[np.ma.getmaskarray(img.array)[0]] = classes.NODATA
    return values
