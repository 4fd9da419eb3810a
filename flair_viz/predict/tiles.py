"""Live prediction tiles: ``/datasets/{id}/predict/{model}/tiles/{tms}/{z}/{x}/{y}.png``, and ``/models``.

The route renders one layer of a tile's prediction (class palette, entropy or margin ramp, or the
error against the patch's ground truth); computing the prediction itself (batching, caches, live or
cut from a scene prediction) is :mod:`flair_viz.predict.live`. Errors are raised by condition, so
their HTTP status comes from the one table the server registers.
"""

from __future__ import annotations

import threading
from typing import Annotated, Literal

import numpy as np
from attrs import define
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi import Path as PathParam
from rio_tiler.colormap import cmap as rio_cmap
from rio_tiler.utils import render
from titiler.core.factory import FactoryExtension, TilerFactory

from flair_viz.core import classes
from flair_viz.core.catalog import Catalog, Dataset
from flair_viz.core.classtile import read_class_tile
from flair_viz.core.errors import InvalidInput, NotFound
from flair_viz.core.lru import LRU
from flair_viz.core.tiling import TmsId, abandon_if_gone, check_zoom, png_response, png_responses
from flair_viz.predict import cards, live, models
from flair_viz.predict.live import TILE, TileResult

ERROR_RGBA = (230, 0, 0, 255)
UNCERTAINTY_CMAP = "magma"
Layer = Literal["class", "entropy", "margin", "error"]
PNGS = LRU(4096)  # rendered PNG bytes per (model checksum, dataset, file version, tile, layer, truth)


# -- rendering ----------------------------------------------------------------------------------
def _uncertainty_lut() -> np.ndarray:
    cm = rio_cmap.get(UNCERTAINTY_CMAP)
    lut = np.array([cm[min(255, max(0, round((v - 1) * 255 / 254)))] for v in range(256)], dtype=np.uint8)
    lut[0] = (0, 0, 0, 0)
    return lut


_UNC_LUT = _uncertainty_lut()
_PALETTE = classes.palette_rgba()


def _png(rgba: np.ndarray) -> bytes:
    return render(np.moveaxis(rgba[..., :3], -1, 0), mask=rgba[..., 3], img_format="PNG")


def render_layer(result: TileResult, layer: str, truth: np.ndarray | None = None) -> bytes:
    """PNG of one layer: class palette, uncertainty colour ramp, or red where truth and prediction differ."""
    if layer == "class":
        return _png(_PALETTE[result.classes])
    if layer in ("entropy", "margin"):
        return _png(_UNC_LUT[getattr(result, layer)])
    assert truth is not None
    wrong = (truth > 0) & (result.classes > 0) & (truth != result.classes)
    rgba = np.zeros((TILE, TILE, 4), np.uint8)
    rgba[wrong] = ERROR_RGBA
    return _png(rgba)


def parse_viewport(text: str | None) -> live.Viewport | None:
    """``x0,y0,x1,y1`` (the tile range a map shows, as its tile URLs carry it) as ints, or None."""
    if text is None:
        return None
    x0, y0, x1, y1 = (int(v) for v in text.split(","))
    if x0 > x1 or y0 > y1:
        raise InvalidInput(f"viewport={text} is not a tile range (x0,y0,x1,y1 with x0 <= x1 and y0 <= y1)",
                           "send the range of tiles the map shows, or leave viewport out")
    return x0, y0, x1, y1


def prediction_png(catalog: Catalog, ds: Dataset, model_id: str, z: int, x: int, y: int, layer: str = "class",
                   tms_id: str = "WebMercatorQuad", viewport_hint: live.Viewport | None = None) -> bytes:
    """The PNG a map shows for one prediction tile; cached, so panning back costs a dictionary lookup.
    ``viewport_hint``: see :func:`flair_viz.predict.live.tile_result` (it never changes the cache key)."""
    card = cards.get_card(model_id)  # an unknown model is answered first, whatever the layer
    truth = catalog.truth_of(ds) if layer == "error" else None
    if layer == "error" and truth is None:
        raise NotFound(f"Dataset {ds.id} has no ground truth in the catalog, so there is no error layer",
                       "register the ground truth (role truth, same patch) or use layer=class")
    place = live.resolve(ds, card, z, tms_id)  # model and file version, once for this request; no file opened
    pkey = (*place.key(x, y), layer, truth.id if truth else None)
    png = PNGS.get(pkey)
    if png is not None:
        return png
    result = live.tile_result(place, x, y, viewport_hint)
    truth_values = None
    if truth is not None:
        truth_values = read_class_tile(truth, tms_id, z, x, y, TILE)
        if truth_values is None:  # the tile misses the truth raster: nothing to mark wrong
            truth_values = np.zeros((TILE, TILE), np.uint8)
    png = render_layer(result, layer, truth_values)
    PNGS.put(pkey, png)
    return png


# -- routes -------------------------------------------------------------------------------------
class ModelsRouter:
    """``GET /models`` and ``GET /device``: what the UI needs to offer live predictions.

    Importing torch (or onnxruntime, for the ONNX engines on a CPU: torch is then never imported) takes
    time; a background thread does it as the server starts, so the first live tile does not pay for it.
    """

    def __init__(self) -> None:
        self.router = APIRouter()
        threading.Thread(target=models.warm_up, name="engine-warm-up", daemon=True).start()

        @self.router.get("/models")
        def list_models() -> list[dict]:
            return [c.to_json() for c in cards.list_cards()]

        @self.router.get("/device")
        def device(model: str | None = None) -> dict:
            """The device; with ``?model=ID`` also the engine that model runs with here (what ``auto`` chose)."""
            if model is None:
                return {"device": models.device_name()}
            return {"device": models.device_name(), "engine": models.load_model(cards.get_card(model)).engine}


@define
class LivePredictionExtension(FactoryExtension):
    """``/datasets/{id}/predict/{model}/tiles/{tms}/{z}/{x}/{y}.png`` on the dataset factory."""

    def register(self, factory: TilerFactory) -> None:
        get_dataset, get_catalog = factory.catalog_dataset_dependency, factory.catalog_dependency

        @factory.router.get("/predict/{model_id}/tiles/{tileMatrixSetId}/{z}/{x}/{y}.png",
                            tags=["predict"], response_class=Response, responses=png_responses("prediction tile"))
        def predict_tile(*,
            ds=Depends(get_dataset),  # injected: not an annotation, which would be looked up in globals
            catalog=Depends(get_catalog),
            model_id: Annotated[str, PathParam(description="model card ID (GET /models)", pattern=cards.ID_RE.pattern)],
            tileMatrixSetId: TmsId,  # noqa: N803 (titiler's name)
            z: int, x: int, y: int, request: Request,
            layer: Annotated[Layer, Query(description="class, entropy, margin, or error (needs ground truth)")] = "class",
            viewport: Annotated[str | None, Query(pattern=r"^\d{1,9},\d{1,9},\d{1,9},\d{1,9}$", description=(
                "x0,y0,x1,y1: the tiles the map shows (Explore's maps add it), predicted with this one as one "
                "region"))] = None,
        ) -> Response:
            truth = catalog.truth_of(ds) if layer == "error" else None  # the error layer reads it at this zoom too
            check_zoom(tileMatrixSetId, z, *(d for d in (ds, truth) if d is not None))
            abandon_if_gone(request)
            return png_response(prediction_png(catalog, ds, model_id, z, x, y, layer, tileMatrixSetId,
                                               parse_viewport(viewport)))
