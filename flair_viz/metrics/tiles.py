"""The confusion tile layer: pixels where the truth is class c1 and the prediction is class c2.

This is where a click on a confusion-matrix cell lands on the map. Both rasters are named by
catalog ID (never by path) and read by the one class-tile reader (nearest resampling, the one class
LUT with the file's nodata), so the highlighted pixels are exactly the counted ones, in any
nomenclature the catalog declares.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from attrs import define
from fastapi import Depends, Query, Request, Response
from rio_tiler.errors import TileOutsideBounds
from rio_tiler.utils import render
from titiler.core.factory import FactoryExtension, TilerFactory

from flair_viz.core import classes
from flair_viz.core.catalog import Dataset
from flair_viz.core.classtile import TILE_SIZE, read_class_tile
from flair_viz.core.errors import InvalidInput
from flair_viz.core.tiling import (
    DatasetId,
    TmsId,
    abandon_if_gone,
    check_tilesize,
    check_zoom,
    png_response,
    png_responses,
)

HIGHLIGHT_RGB = (255, 0, 255)  # magenta: opaque and unlike any FLAIR class colour at a glance


def _view_classes(ds: Dataset, what: str, tms_id: str, z: int, x: int, y: int, size: int,
                  protocol: str) -> np.ndarray:
    """Tile of class values in the view's 1-based classes (0 = nodata, masked or ignored)."""
    if not ds.is_class_raster:
        raise InvalidInput(f"Dataset {ds.id} is an {ds.role}, not a class raster",
                           f"give the catalog ID of a {what} (role truth or prediction)")
    values = read_class_tile(ds, tms_id, z, x, y, size)
    if values is None:
        raise TileOutsideBounds(f"Tile {z}/{x}/{y} is outside {ds.id}")
    return classes.protocol_flair1_lut()[values] if protocol == "flair1" else values


def confusion_tile(truth: Dataset, pred: Dataset, z: int, x: int, y: int, truth_class: int, pred_class: int,
                   protocol: str = "full", tms_id: str = "WebMercatorQuad", size: int = TILE_SIZE) -> bytes:
    """PNG tile: opaque highlight where truth == ``truth_class`` and prediction == ``pred_class``, else transparent."""
    check_tilesize(size)
    if size not in (256, 512):
        raise InvalidInput(f"tilesize={size} is not supported", "use tilesize=256 or 512")
    n = classes.PROTOCOL_FLAIR1_N if protocol == "flair1" else classes.N_CLASSES
    for name, c in (("truth_class", truth_class), ("pred_class", pred_class)):
        if not 1 <= c <= n:
            raise InvalidInput(f"{name}={c} is not a class of the {protocol} view (1..{n})",
                               "use FLAIR-1 values 1..19 (protocol=full) or 1..13 (protocol=flair1, 13 = other)")
    t = _view_classes(truth, "ground truth", tms_id, z, x, y, size, protocol)
    p = _view_classes(pred, "prediction", tms_id, z, x, y, size, protocol)
    hit = (t == truth_class) & (p == pred_class)  # class values are >= 1, so both pixels hold data
    rgb = np.zeros((3, *hit.shape), dtype=np.uint8)
    for band, value in enumerate(HIGHLIGHT_RGB):
        rgb[band][hit] = value
    return render(rgb, mask=np.where(hit, 255, 0).astype(np.uint8), img_format="PNG")


@define
class ConfusionExtension(FactoryExtension):
    """``/datasets/{truth_id}/confusion/{pred_id}/tiles/{tms}/{z}/{x}/{y}.png`` on the dataset factory."""

    def register(self, factory: TilerFactory) -> None:
        get_dataset, get_catalog = factory.catalog_dataset_dependency, factory.catalog_dependency

        @factory.router.get("/confusion/{pred_id}/tiles/{tileMatrixSetId}/{z}/{x}/{y}.png", tags=["metrics"],
                            response_class=Response, responses=png_responses("confusion highlight tile"))
        def confusion_tiles(*,
            truth=Depends(get_dataset),  # injected: not an annotation, which would be looked up in globals
            pred_id: DatasetId,  # the prediction's catalog ID
            catalog=Depends(get_catalog),
            tileMatrixSetId: TmsId,  # noqa: N803 (titiler's name)
            z: int, x: int, y: int, request: Request,
            truth_class: Annotated[int, Query(description="truth class (FLAIR-1 value, or 1..13 with protocol=flair1)")],
            pred_class: Annotated[int, Query(description="predicted class, same numbering")],
            protocol: Annotated[Literal["full", "flair1"], Query(description="full: 19 classes; flair1: 14..19 merged into 13")] = "full",
            tilesize: Annotated[int, Query(description="256 or 512")] = TILE_SIZE,  # Literal[int] rejects query text
        ) -> Response:
            pred = catalog.get(pred_id)
            check_zoom(tileMatrixSetId, z, truth, pred)
            abandon_if_gone(request)
            return png_response(confusion_tile(truth, pred, z, x, y, truth_class, pred_class, protocol,
                                               tms_id=tileMatrixSetId, size=tilesize))
