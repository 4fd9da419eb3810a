"""The one COG writer: every class, probability and change raster FLAIR Viz writes goes through here.

GDAL's COG driver can only *copy* a finished raster, so a writer that streams blocks fills a tiled
GeoTIFF scratch first and copies it at the end. The copy goes through
:func:`flair_viz.core.atomic.atomic_path`, so the final name only ever holds a complete COG, and the
scratch is removed with its GDAL side-cars by :func:`flair_viz.core.atomic.discard` whatever happens.
The scratch is not an atomic temp file (no ``.partial`` in its name): a temp file under the final
name appears only while the COG itself is written.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import rasterio
from rasterio.errors import RasterioIOError
from rasterio.shutil import copy as rio_copy

from flair_viz.core import atomic
from flair_viz.core.errors import Misconfigured, first_line

# Tiled LZW with internal overviews: titiler serves any zoom without reading full resolution.
COG_OPTIONS: dict[str, Any] = {"compress": "LZW", "blocksize": 256, "overview_resampling": "nearest",
                               "BIGTIFF": "IF_SAFER"}
# The scratch a streaming writer fills: tiled like the COG, so the final copy reads whole blocks.
SCRATCH_PROFILE: dict[str, Any] = {"driver": "GTiff", "tiled": True, "blockxsize": 256, "blockysize": 256,
                                   "compress": "LZW", "BIGTIFF": "IF_SAFER"}


def _cannot_write(final: Path, exc: RasterioIOError, src: str | os.PathLike[str] | None = None) -> Misconfigured:
    first = first_line(exc, 200)
    source = f" from {Path(src).name}" if src is not None else ""
    return Misconfigured(f"Cannot write {final.name}{source} in {final.parent}: {first}",
                         "check that the output folder is writable and has free space"
                         + (f", and that {Path(src).name} reads (gdalinfo)" if src is not None else ""))


def write_cog(src_path: str | os.PathLike[str], final_path: str | os.PathLike[str],
              resampling: str = "nearest") -> Path:
    """Copy a GeoTIFF or VRT to a COG under ``final_path``, atomically.

    ``resampling`` builds the overviews: ``nearest`` for classes (never a blended class value),
    ``average`` for probabilities.
    """
    final = Path(final_path)
    with atomic.atomic_path(final) as tmp:
        try:
            rio_copy(src_path, tmp, driver="COG", **{**COG_OPTIONS, "overview_resampling": resampling})
        except RasterioIOError as exc:
            raise _cannot_write(final, exc, src_path) from None
    return final


@contextmanager
def cog_writer(final: str | os.PathLike[str], profile: dict[str, Any],
               resampling: str = "nearest") -> Iterator[rasterio.io.DatasetWriter]:
    """A writable dataset whose blocks become a COG under ``final`` when the block exits cleanly.

    ``profile`` gives what the raster is (width, height, count, dtype, crs, transform, nodata);
    layout and compression are the writer's. On error nothing appears under ``final``. Callers may
    keep their own work files as ``dst.name + ".<suffix>"``: they are removed with the scratch.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    scratch = final.with_name(f".{final.name}.{uuid.uuid4().hex[:12]}.scratch.tif")
    try:
        try:
            dst = rasterio.open(scratch, "w", **{**profile, **SCRATCH_PROFILE})
        except RasterioIOError as exc:
            raise _cannot_write(final, exc) from None
        with dst:
            yield dst
        write_cog(scratch, final, resampling)
    finally:
        atomic.discard(scratch)
