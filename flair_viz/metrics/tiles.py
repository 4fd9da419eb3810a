"""The confusion tile layer: pixels where the truth is class c1 and the prediction is class c2.

This is where a click on a confusion-matrix cell lands on the map. Both rasters are named by
catalog ID (never by path) and read for the tile through rio-tiler with nearest resampling, so the
highlighted pixels are exactly the counted ones, in any nomenclature the catalog declares.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from attrs import define
from fastapi import Depends, Path, Query, Response
from morecantile import tms as default_tms
from rio_tiler.io import Reader
from rio_tiler.utils import render
from titiler.core.factory import FactoryExtension, TilerFactory

from flair_viz.core import classes
from flair_viz.core.catalog import ID_RE, Dataset
from flair_viz.core.errors import FlairVizError

HIGHLIGHT_RGB = (255, 0, 255)  # magenta: opaque and unlike any FLAIR class colour at a glance
TILE_SIZE = 256


def _class_dataset(ds: Dataset, what: str) -> Dataset:
    if not ds.is_class_raster:
        raise FlairVizError(f"Dataset {ds.id} is an {ds.role}, not a class raster",
                            f"give the catalog ID of a {what} (role truth or prediction)")
    return ds


def _read_classes(ds: Dataset, x: int, y: int, z: int, tms_id: str, size: int, protocol: str) -> tuple[np.ndarray, np.ndarray]:
    """Tile of class values in the view's 1-based classes (0 = nodata/ignored) and its validity mask."""
    with Reader(str(ds.path), tms=default_tms.get(tms_id)) as src:
        img = src.tile(x, y, z, tilesize=size, indexes=1, resampling_method="nearest", reproject_method="nearest")
    values = classes.to_flair1(np.asarray(img.data[0]).astype(np.uint8), ds.nomenclature)
    if protocol == "flair1":
        values = classes.protocol_flair1_lut()[values]
    return values, img.mask > 0


def confusion_tile(truth: Dataset, pred: Dataset, x: int, y: int, z: int, truth_class: int, pred_class: int,
                   protocol: str = "full", tms_id: str = "WebMercatorQuad", size: int = TILE_SIZE) -> bytes:
    """PNG tile: opaque highlight where truth == ``truth_class`` and prediction == ``pred_class``, else transparent."""
    n = classes.PROTOCOL_FLAIR1_N if protocol == "flair1" else classes.N_CLASSES
    for name, c in (("truth_class", truth_class), ("pred_class", pred_class)):
        if not 1 <= c <= n:
            raise FlairVizError(f"{name}={c} is not a class of the {protocol} view (1..{n})",
                                "use FLAIR-1 values 1..19 (protocol=full) or 1..13 (protocol=flair1, 13 = other)")
    t, tmask = _read_classes(_class_dataset(truth, "ground truth"), x, y, z, tms_id, size, protocol)
    p, pmask = _read_classes(_class_dataset(pred, "prediction"), x, y, z, tms_id, size, protocol)
    hit = tmask & pmask & (t == truth_class) & (p == pred_class)
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
                            response_class=Response,
                            responses={200: {"content": {"image/png": {}}, "description": "confusion highlight tile"}})
        def confusion_tiles(*,
            truth=Depends(get_dataset),  # injected: not an annotation, which would be looked up in globals
            pred_id: Annotated[str, Path(description="catalog ID of the prediction", pattern=ID_RE.pattern)],
            catalog=Depends(get_catalog),
            tileMatrixSetId: Annotated[Literal[tuple(default_tms.list())], Path()],  # noqa: N803 (titiler's name)
            z: int, x: int, y: int,
            truth_class: Annotated[int, Query(description="truth class (FLAIR-1 value, or 1..13 with protocol=flair1)")],
            pred_class: Annotated[int, Query(description="predicted class, same numbering")],
            protocol: Annotated[Literal["full", "flair1"], Query(description="full: 19 classes; flair1: 14..19 merged into 13")] = "full",
            tilesize: Annotated[Literal[256, 512], Query()] = TILE_SIZE,
        ) -> Response:
            png = confusion_tile(truth, catalog.get(pred_id), x, y, z, truth_class, pred_class, protocol,
                                 tms_id=tileMatrixSetId, size=tilesize)
            return Response(png, media_type="image/png", headers={"Cache-Control": "public, max-age=3600"})
