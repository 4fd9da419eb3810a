"""What a catalog dataset is, as JSON: one description shared by ``catalog list --json`` and ``GET /datasets``.

Scripts, tests and the tile server's clients need the same fields with the same meaning, so they are
built here once. :func:`summary` reads no file (the tile server answers ``/datasets`` per request);
:func:`listing` adds the footprint in Lambert-93, read from the header, and never fails on a bad file.
"""

from __future__ import annotations

from pathlib import Path

from rasterio.errors import CRSError, RasterioError
from rasterio.warp import transform_bounds

from flair_viz.core import raster
from flair_viz.core.catalog import Dataset
from flair_viz.core.errors import FlairVizError, InvalidRaster

KINDS = ("patch", "mosaic", "scene")


def kind_of(ds: Dataset) -> str:
    """``patch`` (a FLAIR patch), ``mosaic`` (a VRT over many rasters) or ``scene`` (any other raster).

    Decided from the catalog entry alone, so that listing datasets never has to open a file.
    """
    if ds.patch:
        return "patch"
    if Path(ds.path).suffix.lower() == ".vrt":
        return "mosaic"
    return "scene"


def summary(ds: Dataset) -> dict:
    """The fields every client may rely on, without reading the raster."""
    return {"id": ds.id, "role": ds.role, "kind": kind_of(ds), "title": ds.title, "vintage": ds.vintage,
            "domain": ds.domain, "zone": ds.zone, "patch": ds.patch, "nomenclature": ds.nomenclature,
            "bands": list(ds.bands), "simulated": ds.simulated}


def bounds_l93(path: str | Path) -> list[float]:
    """``[left, bottom, right, top]`` in EPSG:2154, reprojected when the raster is in another CRS.

    FLAIR footprints are compared and indexed in Lambert-93, whatever CRS a user's scene came in.
    """
    info = raster.describe(path)
    if info.crs is None:
        raise InvalidRaster(f"{info.path.name} has no CRS or georeference, so its footprint in EPSG:2154 is unknown",
                            "if the file was cut short (a partial copy or download), copy it again; otherwise "
                            "assign one (gdal_edit.py -a_srs EPSG:2154 -a_ullr ...)")
    if info.crs == raster.LAMBERT93:
        return [float(v) for v in info.bounds]
    try:
        return [float(v) for v in transform_bounds(info.crs, raster.LAMBERT93, *info.bounds)]
    except (CRSError, RasterioError, ValueError) as exc:
        raise InvalidRaster(f"{info.path.name}: its bounds cannot be reprojected from {info.crs} to EPSG:2154 "
                            f"({str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__})",
                            "reproject the raster to EPSG:2154 (gdalwarp -t_srs EPSG:2154)") from None


def listing(ds: Dataset) -> dict:
    """:func:`summary` plus ``bounds``; an unreadable file gets ``bounds: null`` and an ``error`` (problem and fix).

    One broken file among thousands must not hide the others from a script that lists the catalog.
    """
    out = summary(ds)
    try:
        out["bounds"] = bounds_l93(ds.path)
    except FlairVizError as exc:
        out["bounds"] = None
        out["error"] = exc.with_context(f"Dataset {ds.id}").message
    return out
