"""``/overview/tiles/{tms}/{z}/{x}/{y}.png`` and ``/overview/legend``: the overview layer of the tile server.

A router of its own (it is about the whole catalog, not one dataset); the server injects the catalog
dependency, as it does for the change router. The footprints of a catalog are built once per catalog
version, the colours once per (catalog, metrics-store stamp, choice) (``layer``), so a pan only renders tiles.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal

from attrs import define, field
from fastapi import APIRouter, Depends, Query, Response

from flair_viz.core.catalog import Catalog
from flair_viz.core.tiling import TmsId, check_tilesize, png_response, png_responses
from flair_viz.overview.colours import COLOR_BY
from flair_viz.overview.layer import catalog_colouring
from flair_viz.overview.render import TILE_SIZE, tile_png

ColorBy = Literal[COLOR_BY]


@define
class OverviewRouter:
    """The overview routes; ``catalog_dependency`` is injected by the server."""

    catalog_dependency: Callable[..., Catalog]
    router: APIRouter = field(factory=APIRouter)

    def __attrs_post_init__(self) -> None:
        get_catalog = self.catalog_dependency

        @self.router.get("/overview/tiles/{tileMatrixSetId}/{z}/{x}/{y}.png", response_class=Response,
                         responses=png_responses("footprint tile"))
        def overview_tile(*,
            catalog=Depends(get_catalog),  # injected: not an annotation (looked up in globals)
            tileMatrixSetId: TmsId,  # noqa: N803 (titiler's name)
            z: int, x: int, y: int,
            color_by: Annotated[ColorBy, Query(description="domain, date, miou, oa, iou (needs cls) or confusion "
                                                           "(needs truth_class, pred_class)")] = "domain",
            model: Annotated[str | None, Query(description="model whose stored scores colour the patches",
                                               pattern=r"^[A-Za-z0-9_.-]+$")] = None,
            protocol: Annotated[Literal["flair1", "full"], Query()] = "flair1",
            cls: Annotated[int | None, Query(description="class of the IoU (1-based, in the protocol's view)")] = None,
            truth_class: Annotated[int | None, Query()] = None,
            pred_class: Annotated[int | None, Query()] = None,
            tilesize: Annotated[int, Query(description="256 or 512")] = TILE_SIZE,
        ) -> Response:
            check_tilesize(tilesize)
            fp, c = catalog_colouring(catalog, color_by, model, protocol, cls, truth_class, pred_class)
            return png_response(tile_png(fp, c.rgba, z, x, y, tilesize, tileMatrixSetId))

        @self.router.get("/overview/legend")
        def overview_legend(*,
            catalog=Depends(get_catalog),
            color_by: Annotated[ColorBy, Query()] = "domain",
            model: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_.-]+$")] = None,
            protocol: Annotated[Literal["flair1", "full"], Query()] = "flair1",
            cls: Annotated[int | None, Query()] = None,
            truth_class: Annotated[int | None, Query()] = None,
            pred_class: Annotated[int | None, Query()] = None,
        ) -> dict:
            fp, c = catalog_colouring(catalog, color_by, model, protocol, cls, truth_class, pred_class)
            return {"title": c.legend.title, "entries": [{"label": lab, "color": col} for lab, col in c.legend.entries],
                    "note": c.legend.note, "patches": len(fp)}
