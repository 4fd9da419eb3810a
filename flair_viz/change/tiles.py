"""Change tiles: ``/change/{before_id}/{after_id}/tiles/{tms}/{z}/{x}/{y}.png?mode=class|flow``.

The change layer is computed per tile from the two class rasters, so any pair in the catalog can be
shown without precomputing anything: each date is read onto the tile's grid by the one class-tile
reader (nearest neighbour, the one class LUT with the file's nodata), then changed pixels are coloured by their new class
(``mode=class``, the FLAIR palette) or by ZAN flow group (``mode=flow``: artificialisation red,
de-artificialisation green, other change grey). Unchanged and nodata pixels are transparent.

Both rasters are named by catalog ID only, like every other endpoint. A precomputed change COG
(``flair-viz change`` output) can also be registered with ``role = "change"`` and served by the
ordinary ``/datasets/{id}`` tiles, which colour it with the class palette.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Annotated, Literal

import numpy as np
from attrs import define, field
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from rio_tiler.errors import TileOutsideBounds
from rio_tiler.utils import render

from flair_viz.change.align import source_from_dataset
from flair_viz.change.compute import change_codes
from flair_viz.change.grouping import FLOW_COLORS, ZanGrouping, load_grouping
from flair_viz.core import classes
from flair_viz.core.catalog import Catalog, Dataset
from flair_viz.core.classtile import TILE_SIZE, read_class_tile
from flair_viz.core.errors import InvalidInput
from flair_viz.core.tiling import DatasetId, TmsId, abandon_if_gone, check_zoom, png_response, png_responses

Mode = Literal["class", "flow"]


@lru_cache(maxsize=1)
def default_grouping() -> ZanGrouping:
    """The packaged grouping; tiles cannot take a file path (requests never name files)."""
    return load_grouping()


def colour_change(before: np.ndarray, after: np.ndarray, mode: str, grouping: ZanGrouping) -> np.ndarray:
    """(H, W, 4) RGBA for the change layer: changed pixels by new class or by flow group, rest transparent."""
    if mode == "class":
        return classes.palette_rgba()[change_codes(before, after)]
    if mode == "flow":
        pal = np.zeros((4, 4), dtype=np.uint8)
        for k, rgba in FLOW_COLORS.items():
            pal[k] = rgba
        return pal[grouping.flow_matrix()[before, after]]
    raise InvalidInput(f"Unknown change mode {mode!r}", "use mode=class (new class) or mode=flow (ZAN flow group)")


def change_tile_png(before: Dataset, after: Dataset, z: int, x: int, y: int, mode: str = "class",
                    grouping: ZanGrouping | None = None, tms_id: str = "WebMercatorQuad") -> bytes:
    """PNG bytes of the change layer on one map tile; TileOutsideBounds (404) when outside both."""
    for ds in (before, after):
        source_from_dataset(ds)  # refuses images and change COGs with the change engine's own error
    b = read_class_tile(before, tms_id, z, x, y, TILE_SIZE)
    a = read_class_tile(after, tms_id, z, x, y, TILE_SIZE)
    if b is None and a is None:
        raise TileOutsideBounds(f"Tile {z}/{x}/{y} is outside both {before.id} and {after.id}")
    empty = np.zeros((TILE_SIZE, TILE_SIZE), dtype=np.uint8)
    rgba = colour_change(empty if b is None else b, empty if a is None else a, mode, grouping or default_grouping())
    return render(np.ascontiguousarray(rgba[..., :3].transpose(2, 0, 1)), mask=rgba[..., 3], img_format="PNG")


@define(kw_only=True)
class ChangeTilerFactory:
    """``/change/{before_id}/{after_id}/tiles/...``: a router of its own (two IDs, not one dataset).

    The catalog dependency is injected by the server, as titiler injects a factory's dependencies.
    """

    catalog_dependency: Callable[..., Catalog]
    router: APIRouter = field(factory=APIRouter)

    def __attrs_post_init__(self) -> None:
        get_catalog = self.catalog_dependency

        @self.router.get("/change/{before_id}/{after_id}/tiles/{tileMatrixSetId}/{z}/{x}/{y}.png",
                         response_class=Response, responses=png_responses("change tile"))
        def change_tile(before_id: DatasetId, after_id: DatasetId,
                        tileMatrixSetId: TmsId,  # noqa: N803 (titiler's name)
                        z: int, x: int, y: int, request: Request,
                        mode: Annotated[Mode, Query(description="class: new class colour; flow: ZAN flow group")] = "class",
                        catalog=Depends(get_catalog),  # injected: not an annotation (looked up in globals)
                        ) -> Response:
            before, after = catalog.get(before_id), catalog.get(after_id)
            check_zoom(tileMatrixSetId, z, before, after)
            abandon_if_gone(request)
            return png_response(change_tile_png(before, after, z, x, y, mode, tms_id=tileMatrixSetId))
