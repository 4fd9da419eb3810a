"""Change tiles: ``/change/{before_id}/{after_id}/tiles/WebMercatorQuad/{z}/{x}/{y}.png?mode=class|flow``.

The change layer is computed per tile from the two class rasters, so any pair in the catalog can be
shown without precomputing anything: each date is read onto the tile's grid with nearest
neighbour (classes are never averaged), then changed pixels are coloured by their new class
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
from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response
from rio_tiler.errors import TileOutsideBounds
from rio_tiler.io import Reader
from rio_tiler.utils import render

from flair_viz import change
from flair_viz.core.catalog import ID_RE, Catalog

TILE_SIZE = 256
Mode = Literal["class", "flow"]
DatasetId = Annotated[str, Path(description="Catalog dataset ID (see /datasets)", pattern=ID_RE.pattern)]


@lru_cache(maxsize=1)
def default_grouping() -> change.ZanGrouping:
    """The packaged grouping; tiles cannot take a file path (requests never name files)."""
    return change.load_grouping()


def read_codes(src: change.ClassSource, z: int, x: int, y: int) -> np.ndarray | None:
    """FLAIR-1 codes (0 = nodata/outside) of one class raster on a Web Mercator tile; None if outside it."""
    try:
        with Reader(str(src.path)) as r:
            img = r.tile(x, y, z, tilesize=TILE_SIZE, indexes=1, resampling_method="nearest",
                         reproject_method="nearest")
            lut = change._value_lut(src, r.dataset.nodata)
    except TileOutsideBounds:
        return None
    arr = img.array
    codes = lut[np.asarray(arr.data[0], dtype=np.uint8)]
    codes[np.ma.getmaskarray(arr)[0]] = 0
    return codes


def change_tile_png(before: change.ClassSource, after: change.ClassSource, z: int, x: int, y: int,
                    mode: str = "class", grouping: change.ZanGrouping | None = None) -> bytes:
    """PNG bytes of the change layer on one tile; raises TileOutsideBounds (404) when outside both."""
    b, a = read_codes(before, z, x, y), read_codes(after, z, x, y)
    if b is None and a is None:
        raise TileOutsideBounds(f"Tile {z}/{x}/{y} is outside both {before.name} and {after.name}")
    empty = np.zeros((TILE_SIZE, TILE_SIZE), dtype=np.uint8)
    rgba = change.colour_change(empty if b is None else b, empty if a is None else a, mode,
                                grouping or default_grouping())
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

        @self.router.get("/change/{before_id}/{after_id}/tiles/WebMercatorQuad/{z}/{x}/{y}.png",
                         response_class=Response, responses={200: {"content": {"image/png": {}}}})
        def change_tile(before_id: DatasetId, after_id: DatasetId, z: int, x: int, y: int,
                        mode: Annotated[Mode, Query(description="class: new class colour; flow: ZAN flow group")] = "class",
                        catalog=Depends(get_catalog),  # injected: not an annotation (looked up in globals)
                        ) -> Response:
            before = change.source_from_dataset(catalog.get(before_id))
            after = change.source_from_dataset(catalog.get(after_id))
            png = change_tile_png(before, after, z, x, y, mode)
            return Response(png, media_type="image/png", headers={"Cache-Control": "max-age=3600"})
