"""The tile server: one FastAPI app that serves catalog datasets by ID only.

:func:`create_app` wires the pieces: the catalog store (``app.state.catalog``), a guard middleware
(no file paths or URLs in requests, tile coordinates inside their matrix set, the optional token),
the one error table (:data:`flair_viz.core.errors.STATUS_CODES`), the dataset factory with the
live-prediction and confusion extensions, and the change router. Features never import this
module; it imports them.

Every route has a bounded cost (:mod:`flair_viz.core.tiling`): zooms outside a dataset's range and
sizes over the caps of the settings table are refused with a 400 naming the limit and the fix, and a
request whose client has gone is dropped before its read or prediction starts.
"""

from __future__ import annotations

import hmac
import os
import re
from pathlib import Path as FsPath
from typing import Annotated

import morecantile
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from rasterio.errors import RasterioError
from rio_tiler.errors import PointOutsideBounds
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send
from titiler.core.errors import DEFAULT_STATUS_CODES, add_exception_handlers

from flair_viz.annotate.routes import CandidatesExtension
from flair_viz.change.tiles import ChangeTilerFactory
from flair_viz.core import config, describe
from flair_viz.core.catalog import Catalog, CatalogStore, Dataset
from flair_viz.core.errors import FlairVizError, InvalidInput, UnreadableRaster, first_line, status_code
from flair_viz.metrics.tiles import ConfusionExtension
from flair_viz.overview.tiles import OverviewRouter
from flair_viz.predict.tiles import LivePredictionExtension, ModelsRouter
from flair_viz.server.factory import DatasetTilerFactory, get_catalog

FORBIDDEN_PARAMS = {"url", "file", "path", "filename", "src"}

# ``.../tiles/{tms}/{z}/{x}/{y}[@Nx][.fmt]`` on every router (datasets, predict, confusion, change).
TILE_PATH = re.compile(r"/tiles/(?P<tms>[A-Za-z0-9_]+)/(?P<z>-?\d+)/(?P<x>-?\d+)/(?P<y>-?\d+)(?:@\d+x)?(?:\.\w+)?$")

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


def _dataset_json(ds: Dataset) -> dict:
    """The catalog fields ``catalog list --json`` also gives (``kind`` included), read from no file per request."""
    return describe.summary(ds)


RASTER_ID_PARAMS = ("dataset_id", "pred_id", "before_id", "after_id")


def _error_json(exc: FlairVizError) -> JSONResponse:
    return JSONResponse(status_code=status_code(exc), content={"detail": exc.problem, "fix": exc.fix})


def unreadable_raster(request: Request, exc: Exception) -> UnreadableRaster:
    """A GDAL read failure inside a route, named after the catalog files the request was about.

    GDAL says only "Read failed" for a truncated TIFF; the request's path parameters say which
    datasets were being read, so the answer can name their files and the fix.
    """
    names = []
    try:
        catalog = request.app.state.catalog.get()
        names = [catalog.get(request.path_params[k]).path.name for k in RASTER_ID_PARAMS if k in request.path_params]
    except FlairVizError:
        pass
    what = " or ".join(names) or "a raster of this request"
    return UnreadableRaster(f"Cannot read {what}: {first_line(exc)}",
                      "the file is probably truncated or corrupt; re-export it, then check it with "
                      "`flair-viz catalog validate`")


class Guard:
    """Refuse path-like parameters and tiles outside their matrix set outright, and enforce the token when one is set.

    A plain ASGI middleware, not ``@app.middleware("http")``: Starlette's ``BaseHTTPMiddleware`` hands routes a
    ``receive`` behind a task group, and ``request.is_disconnected()`` (a check that must not wait) never gets
    through it, so a route could not see that its client had gone (:func:`flair_viz.core.tiling.abandon_if_gone`).
    """

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app, self.token = app, token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = self.refusal(Request(scope)) if scope["type"] == "http" else None
        if refusal is not None:
            await refusal(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def refusal(self, request: Request) -> JSONResponse | None:
        """The answer to a request refused before any route runs, or None."""
        bad = FORBIDDEN_PARAMS & {k.lower() for k in request.query_params}
        if bad or any("/vsi" in v.lower() or ".." in v for v in request.query_params.values()):
            return _error_json(InvalidInput(
                "FLAIR Viz serves datasets by catalog ID only; file paths and URLs are not accepted",
                "register the file in the catalog (`flair-viz catalog scan DIR`) and use its ID"))
        problem = bad_tile(request.url.path)
        if problem:
            return _error_json(InvalidInput(problem, "request tiles inside the tile matrix set (the map client does this)"))
        # A missing token is no condition of our data, so no row of the error table: HTTP's own 401.
        if self.token and request.url.path != "/healthz":  # load balancers probe health without the token
            given = request.query_params.get("token") or request.headers.get("authorization", "").removeprefix("Bearer ")
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return JSONResponse(status_code=401, content={"detail": "missing or wrong token",
                                                              "fix": "pass ?token=... or 'Authorization: Bearer ...'"})
        return None


def create_app(catalog_path: str | os.PathLike[str] | None = None, token: str | None = None) -> FastAPI:
    """Build the tile server. ``token`` (or ``$FLAIR_VIZ_TOKEN``) makes every request require it."""
    app = FastAPI(title="FLAIR Viz tile server", description="Serves catalog datasets by ID only.")
    app.state.catalog = CatalogStore(FsPath(catalog_path or config.catalog_path()))
    token = token or config.settings().token

    app.add_middleware(Guard, token=token)

    # rio-tiler's errors keep titiler's table; a point query outside the data is a missing resource,
    # like a tile outside it (titiler answers 500). Ours answer from STATUS_CODES, by condition.
    # GDAL failures (any RasterioError) are answered once, naming the files the request read.
    rio_tiler_codes = {k: v for k, v in DEFAULT_STATUS_CODES.items() if not issubclass(k, RasterioError)}
    add_exception_handlers(app, {**rio_tiler_codes, PointOutsideBounds: 404})
    app.add_exception_handler(FlairVizError, lambda request, exc: _error_json(exc))
    app.add_exception_handler(RasterioError, lambda request, exc: _error_json(unreadable_raster(request, exc)))
    # A client that has gone reads no answer: 499 (nginx's "client closed request") only marks it in the logs.
    # No row of the error table: it is no condition of our data.
    app.add_exception_handler(ClientDisconnect, lambda request, exc: Response(status_code=499))

    @app.get("/healthz")
    def healthz() -> dict:
        # warming: this process is predicting the home story's zone ahead (serve's start-up, FLAIR_VIZ_WARM)
        from flair_viz.predict import live

        return {"ok": True, "warming": live.WARMING.is_set()}

    @app.get("/datasets")
    def list_datasets(catalog: Annotated[Catalog, Depends(get_catalog)]) -> list[dict]:
        return [_dataset_json(d) for d in catalog]

    app.include_router(ModelsRouter().router, tags=["predict"])
    app.include_router(ChangeTilerFactory(catalog_dependency=get_catalog).router, tags=["change"])
    app.include_router(OverviewRouter(catalog_dependency=get_catalog).router, tags=["overview"])
    factory = DatasetTilerFactory(router_prefix="/datasets/{dataset_id}",
                                  extensions=[LivePredictionExtension(), ConfusionExtension(), CandidatesExtension()])
    app.include_router(factory.router, prefix="/datasets/{dataset_id}", tags=["datasets"])
    return app
