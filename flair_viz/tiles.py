"""The tile server: a FastAPI app built from titiler.core factories that serves datasets by catalog ID only.

Shape follows titiler's ``factory.py``: :class:`DatasetTilerFactory` is a ``TilerFactory`` whose
path dependency resolves ``/datasets/{dataset_id}`` through the catalog, so no request parameter
is ever a path or a URL. Feature modules (live prediction, change…) add their own routers through
:data:`EXTENSION_MODULES`; they all share the catalog held in ``app.state``.
"""

from __future__ import annotations

import hmac
import importlib
import os
import re
from collections.abc import Callable
from pathlib import Path as FsPath
from typing import Annotated, Literal

import morecantile
from attrs import define
from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.responses import JSONResponse
from rio_tiler.colormap import cmap as rio_cmap
from rio_tiler.errors import PointOutsideBounds
from titiler.core.dependencies import BidxParams, ImageRenderingParams
from titiler.core.errors import DEFAULT_STATUS_CODES, add_exception_handlers
from titiler.core.factory import TilerFactory

from flair_viz import classes
from flair_viz.catalog import Catalog, CatalogStore, Dataset
from flair_viz.errors import CatalogError, FlairVizError
from flair_viz.raster import PRESET_BANDS

Preset = Literal["rgb", "irc", "elevation"]
ELEVATION_RESCALE = "0,60"  # nDSM in FLAIR is metres-ish uint8; most relief sits below 60
FORBIDDEN_PARAMS = {"url", "file", "path", "filename", "src"}

# ``.../tiles/{tms}/{z}/{x}/{y}[@Nx][.fmt]`` on every router (datasets, predict, confusion, change).
TILE_PATH = re.compile(r"/tiles/(?P<tms>[A-Za-z0-9_]+)/(?P<z>-?\d+)/(?P<x>-?\d+)/(?P<y>-?\d+)(?:@\d+x)?(?:\.\w+)?$")

DatasetId = Annotated[str, Path(description="Catalog dataset ID (see /datasets)", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")]


def bad_tile(path: str) -> str | None:
    """Why ``z/x/y`` in a tile path is not a tile of its matrix set, or None if it is (or the path is no tile).

    Checked once for every router: left to the readers, a negative zoom was a 500 and a live
    prediction tile of a non-existent x/y a blank 200.
    """
    m = TILE_PATH.search(path)
    if m is None or m["tms"] not in morecantile.tms.list():
        return None  # not a tile path, or an unknown set that the route itself answers with 422
    tms = morecantile.tms.get(m["tms"])
    z, x, y = int(m["z"]), int(m["x"]), int(m["y"])
    if not tms.minzoom <= z <= tms.maxzoom:
        return f"Zoom {z} is outside {m['tms']} ({tms.minzoom}..{tms.maxzoom})"
    matrix = tms.matrix(z)
    if not (0 <= x < matrix.matrixWidth and 0 <= y < matrix.matrixHeight):
        return f"Tile {z}/{x}/{y} does not exist in {m['tms']} (x < {matrix.matrixWidth}, y < {matrix.matrixHeight})"
    return None


def get_catalog(request: Request) -> Catalog:
    """The catalog of this app (reloaded when its file changes)."""
    return request.app.state.catalog.get()


def get_dataset(dataset_id: DatasetId, request: Request) -> Dataset:
    """Resolve a dataset ID; unknown IDs raise CatalogError (answered as 404)."""
    return get_catalog(request).get(dataset_id)


def dataset_path(dataset: Annotated[Dataset, Depends(get_dataset)]) -> str:
    """titiler path dependency: the file path comes from the catalog, never from the request."""
    return str(dataset.path)


def preset_indexes(ds: Dataset, preset: str | None) -> list[int]:
    """1-based band indexes for a preset, or a clear error naming the bands the file has."""
    if ds.is_class_raster:
        return [1]
    preset = preset or ("rgb" if all(b in ds.bands for b in PRESET_BANDS["rgb"]) else None)
    if preset is None:  # e.g. an IRC-only file
        preset = "irc" if all(b in ds.bands for b in PRESET_BANDS["irc"]) else None
    if preset is None:
        return [1, 2, 3][: max(1, min(3, len(ds.bands)))]
    missing = [b for b in PRESET_BANDS[preset] if b not in ds.bands]
    if missing:
        raise FlairVizError(f"Dataset {ds.id} has no {', '.join(missing)} band for the {preset} preset "
                            f"(bands: {', '.join(ds.bands)})", "choose another preset")
    return [ds.bands.index(b) + 1 for b in PRESET_BANDS[preset]]


def layer_params(dataset: Annotated[Dataset, Depends(get_dataset)],
                 preset: Annotated[Preset | None, Query(description="Band preset: rgb, irc or elevation")] = None) -> BidxParams:
    return BidxParams(indexes=preset_indexes(dataset, preset))


def colormap_params(dataset: Annotated[Dataset, Depends(get_dataset)],
                    preset: Annotated[Preset | None, Query()] = None) -> dict | None:
    """Class rasters always get the FLAIR palette (0 transparent); elevation gets viridis."""
    if dataset.is_class_raster:
        return classes.colormap()
    if preset == "elevation":
        return rio_cmap.get("viridis")
    return None


def render_params(dataset: Annotated[Dataset, Depends(get_dataset)],
                  preset: Annotated[Preset | None, Query()] = None) -> ImageRenderingParams:
    if preset == "elevation" and not dataset.is_class_raster:
        return ImageRenderingParams(rescale=[ELEVATION_RESCALE])
    return ImageRenderingParams()


@define(kw_only=True)
class DatasetTilerFactory(TilerFactory):
    """A TilerFactory bound to the catalog: ``/datasets/{dataset_id}/...`` with presets and palettes."""

    path_dependency: Callable[..., str] = dataset_path
    layer_dependency: Callable[..., BidxParams] = layer_params
    colormap_dependency: Callable[..., dict | None] = colormap_params
    render_dependency: Callable[..., ImageRenderingParams] = render_params
    add_viewer: bool = False
    add_part: bool = False


# Feature modules that mount their own routers: each defines ``register(app: FastAPI) -> None``.
EXTENSION_MODULES: tuple[str, ...] = (
    "flair_viz.metrics_tiles",
    "flair_viz.change_tiles",
    "flair_viz.predict_tiles",
)


def _dataset_json(ds: Dataset) -> dict:
    return {"id": ds.id, "role": ds.role, "title": ds.title, "vintage": ds.vintage, "domain": ds.domain,
            "zone": ds.zone, "patch": ds.patch, "nomenclature": ds.nomenclature, "bands": list(ds.bands),
            "simulated": ds.simulated}


def create_app(catalog_path: str | os.PathLike[str] | None = None, token: str | None = None) -> FastAPI:
    """Build the tile server. ``token`` (or ``$FLAIR_VIZ_TOKEN``) makes every request require it."""
    from flair_viz.config import catalog_path as default_catalog_path

    app = FastAPI(title="FLAIR Viz tile server", description="Serves catalog datasets by ID only.")
    app.state.catalog = CatalogStore(FsPath(catalog_path or default_catalog_path()))
    token = token or os.environ.get("FLAIR_VIZ_TOKEN") or None

    @app.middleware("http")
    async def guard(request: Request, call_next):
        """Refuse path-like parameters outright and enforce the token when one is set."""
        bad = FORBIDDEN_PARAMS & {k.lower() for k in request.query_params}
        if bad or any("/vsi" in v.lower() or ".." in v for v in request.query_params.values()):
            return JSONResponse(status_code=400, content={
                "detail": "FLAIR Viz serves datasets by catalog ID only; file paths and URLs are not accepted",
                "fix": "register the file in the catalog (`flair-viz catalog scan DIR`) and use its ID"})
        problem = bad_tile(request.url.path)
        if problem:
            return JSONResponse(status_code=400, content={
                "detail": problem, "fix": "request tiles inside the tile matrix set (the map client does this)"})
        if token and request.url.path != "/healthz":  # load balancers probe health without the token
            given = request.query_params.get("token") or request.headers.get("authorization", "").removeprefix("Bearer ")
            if not hmac.compare_digest(given.encode(), token.encode()):
                return JSONResponse(status_code=401, content={"detail": "missing or wrong token",
                                                              "fix": "pass ?token=... or 'Authorization: Bearer ...'"})
        return await call_next(request)

    @app.exception_handler(FlairVizError)
    async def flair_error(request: Request, exc: FlairVizError):
        status = 404 if isinstance(exc, CatalogError) else 400
        return JSONResponse(status_code=status, content={"detail": exc.problem, "fix": exc.fix})

    # a point query outside the data is a missing resource, like a tile outside it (titiler answers 500)
    add_exception_handlers(app, {**DEFAULT_STATUS_CODES, PointOutsideBounds: 404})

    @app.get("/healthz")
    def healthz() -> dict:
        return {"ok": True}

    @app.get("/datasets")
    def list_datasets(catalog: Annotated[Catalog, Depends(get_catalog)]) -> list[dict]:
        return [_dataset_json(d) for d in catalog]

    for name in EXTENSION_MODULES:
        importlib.import_module(name).register(app)

    factory = DatasetTilerFactory(router_prefix="/datasets/{dataset_id}")
    app.include_router(factory.router, prefix="/datasets/{dataset_id}", tags=["datasets"])
    return app
