"""What a catalog dataset is, as JSON: one description shared by ``catalog list --json`` and ``GET /datasets``.

Scripts, tests and the tile server's clients need the same fields with the same meaning, so they are
built here once. :func:`summary` reads no file (the tile server answers ``/datasets`` per request);
:func:`listing` adds the footprint in Lambert-93, read from the header, and never fails on a bad file.
"""

from __future__ import annotations

from pathlib import Path

from flair_viz.core import index, raster
from flair_viz.core.catalog import Catalog, Dataset
from flair_viz.core.errors import FlairVizError

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
    """``[left, bottom, right, top]`` in EPSG:2154 (see :func:`flair_viz.core.index.l93_bounds`)."""
    return index.l93_bounds(raster.describe(path))


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


def catalog_listing(cat: Catalog) -> list[dict]:
    """:func:`listing` of every dataset; rows of a patch index take their bounds from it (no file opened)."""
    t = cat.table()
    t = t[t["indexed"]]
    bounds = dict(zip(t["id"], zip(t["left"], t["bottom"], t["right"], t["top"])))
    return [{**summary(ds), "bounds": [float(v) for v in bounds[ds.id]]} if ds.id in bounds else listing(ds)
            for ds in cat]
