"""The plumbing every tile route shares, defined once: the path parameters, the PNG answer, the zoom range, the caps.

Why in core: the server's titiler factory and the features' routers (live prediction, confusion, change,
overview) all need these, and features never import the server (docs/architecture.md). This is the one core
module that knows FastAPI.

Why bounded: before these checks one request could cost a server 130 s of CPU (a z0 tile of one 512 px patch)
or 10 GB of memory (one ``buffer=``). Each route now refuses, before reading anything, a zoom or a size whose
cost has no bound: the answer is a 400 (:class:`InvalidInput`, from the one status table) that names the limit
and the fix. The caps are fields of the one settings table (:class:`flair_viz.core.config.Settings`).
"""

from __future__ import annotations

import functools
import math
from typing import Annotated, Literal

import anyio.from_thread
import morecantile
from fastapi import Path, Request, Response
from rio_tiler.io import Reader
from starlette.requests import ClientDisconnect

from flair_viz.core import config
from flair_viz.core.catalog import ID_RE, Dataset
from flair_viz.core.errors import InvalidInput
from flair_viz.core.raster import tile_source

# The tile matrix sets every router offers: the titiler factory's ``supported_tms`` and each feature route's.
SUPPORTED_TMS = morecantile.tms
TmsId = Annotated[Literal[tuple(SUPPORTED_TMS.list())],
                  Path(description="TileMatrixSet identifier (web maps use WebMercatorQuad)")]
DatasetId = Annotated[str, Path(description="Catalog dataset ID (see /datasets)", pattern=ID_RE.pattern)]

# Tiles are computed from files that can be replaced under the same URL (a scene predicted again, a new
# evaluation colouring the overview). A minute bounds how long a browser shows an old tile; a re-request costs
# the server a cache lookup (its own caches are keyed by file stamps, so they are never stale).
CACHE_CONTROL = "public, max-age=60"


def png_responses(description: str) -> dict:
    """The OpenAPI ``responses`` of a PNG route."""
    return {200: {"content": {"image/png": {}}, "description": description}}


def png_response(png: bytes) -> Response:
    """The one answer of a PNG tile route, with the one Cache-Control policy."""
    return Response(png, media_type="image/png", headers={"Cache-Control": CACHE_CONTROL})


# -- zoom range -------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4096)
def _coarsest_zoom(source: str, tms_id: str, size: int, mtime_ns: int) -> int:
    """The zoom of the file's coarsest stored resolution: its native zoom less its overview levels.

    Keyed by the file stamp, so a tile request pays one header read per file version, not one per tile."""
    with Reader(source, tms=SUPPORTED_TMS.get(tms_id)) as src:
        factor = max(src.dataset.overviews(1), default=1)
        return src.maxzoom - round(math.log2(factor))


def zoom_range(ds: Dataset, tms_id: str) -> tuple[int, int]:
    """The zooms a dataset is served at: from ``max_zoom_out`` levels below its coarsest stored resolution.

    Why that bound: a tile coarser than the data makes the reader warp the tile's whole extent at the stored
    resolution, so each zoom level out costs 4x the pixels. Measured on a 512 px patch without overviews (native
    z19; one aerial tile, in process, 2-core VM, 2026-12-06): 0.1 s and +0.1 GB at z15, 0.4 s and +0.6 GB at z14,
    2 s and +1.2 GB at z13, 22 s and +1.8 GB at z10. A zone mosaic with four overview levels (coarsest z15): 0.2 s
    down to z11, 0.4 s and +0.5 GB at z10, 15 s and +1.1 GB at z8. ``benchmarks/request_cost.py`` measures the
    worst request the caps allow.
    Zooming in costs only the tile's own pixels, so the top of the range is the matrix set's."""
    tms = SUPPORTED_TMS.get(tms_id)
    try:
        st = ds.path.stat()
    except OSError:
        return tms.minzoom, tms.maxzoom  # a missing file: the route's reader names it
    coarsest = _coarsest_zoom(tile_source(ds.path), tms_id, st.st_size, st.st_mtime_ns)
    return max(tms.minzoom, coarsest - config.settings().max_zoom_out), tms.maxzoom


def check_zoom(tms_id: str, z: int, *datasets: Dataset) -> None:
    """Refuse a tile zoom outside the range of any dataset the tile reads (see :func:`zoom_range`)."""
    for ds in datasets:
        low, high = zoom_range(ds, tms_id)
        if not low <= z <= high:
            raise InvalidInput(f"Zoom {z} is outside the zoom range of dataset {ds.id} ({low}..{high} in {tms_id})",
                               f"zoom in to {low} or more; the Overview page shows the whole catalog at any zoom")


# -- size caps --------------------------------------------------------------------------------------------
def check_cap(param: str, value: float | None, setting: str) -> None:
    """Refuse ``param=value`` above the cap ``setting`` of the settings table (None: not asked, nothing to cap)."""
    cap = getattr(config.settings(), setting)
    if value is not None and value > cap:
        raise InvalidInput(f"{param}={value:g} is over this server's cap ({param} <= {cap})",
                           f"ask for {param}={cap} or less (the operator sets the cap with {config.env_name(setting)})")


def check_tilesize(tilesize: int | None) -> None:
    """The ``tilesize=`` of any tile route, under the one cap."""
    check_cap("tilesize", tilesize, "max_tilesize")


# -- a client that has gone -------------------------------------------------------------------------------
def abandon_if_gone(request: Request) -> None:
    """Stop before the expensive part when the client has gone (a map panned away, a tab closed).

    Called in the route's worker thread, where a request may have waited for a free thread: the check comes
    after that wait, just before the read or the prediction. Work already started runs to its end (GDAL reads
    and model passes cannot be interrupted; live tiles predicted anyway are cached for the next view)."""
    if anyio.from_thread.run(request.is_disconnected):
        raise ClientDisconnect()
