"""``/overview/tiles/{tms}/{z}/{x}/{y}.png``, ``/overview/legend`` and ``/overview/at``: the overview layer of the
tile server.

A router of its own (it is about the whole catalog, not one dataset); the server injects the catalog
dependency, as it does for the change router. The footprints of a catalog are built once per catalog
version, the colours once per (catalog, metrics-store stamp, choice) (``layer``), so a pan only renders tiles.
``/overview/at`` answers the map's hover tooltip (``hover``); the map's frame is served by Streamlit, another
origin, so that one JSON answer carries ``Access-Control-Allow-Origin`` (it says no more than the tiles show).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Literal

from attrs import define, field
from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import JSONResponse

from flair_viz.core.catalog import Catalog
from flair_viz.core.tiling import TmsId, check_tilesize, png_response, png_responses
from flair_viz.overview.colours import COLOR_BY, Colouring
from flair_viz.overview.footprints import Footprints
from flair_viz.overview.hover import describe, patch_near
from flair_viz.overview.layer import catalog_colouring
from flair_viz.overview.render import TILE_SIZE, tile_png

ColorBy = Literal[COLOR_BY]
ID_PATTERN = r"^[A-Za-z0-9_.-]+$"


@dataclass
class ColouringParams:
    """What colours the footprints: the same query on every overview route, injected as one dependency (the
    shape of titiler's dependencies), so the tiles, the legend and the hover answer always agree."""

    color_by: Annotated[ColorBy, Query(description="domain, date, miou, oa, iou (needs cls) or confusion "
                                                   "(needs truth_class, pred_class)")] = "domain"
    model: Annotated[str | None, Query(description="model whose stored scores colour the patches",
                                       pattern=ID_PATTERN)] = None
    protocol: Annotated[Literal["flair1", "full"], Query()] = "flair1"
    cls: Annotated[int | None, Query(description="class of the IoU (1-based, in the protocol's view)")] = None
    truth_class: Annotated[int | None, Query()] = None
    pred_class: Annotated[int | None, Query()] = None

    def of(self, catalog: Catalog) -> tuple[Footprints, Colouring]:
        return catalog_colouring(catalog, self.color_by, self.model, self.protocol, self.cls, self.truth_class,
                                 self.pred_class)


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
            colouring: Annotated[ColouringParams, Depends()],
            tilesize: Annotated[int, Query(description="256 or 512")] = TILE_SIZE,
        ) -> Response:
            check_tilesize(tilesize)
            fp, c = colouring.of(catalog)
            return png_response(tile_png(fp, c.rgba, z, x, y, tilesize, tileMatrixSetId))

        @self.router.get("/overview/legend")
        def overview_legend(*,
            catalog=Depends(get_catalog),
            colouring: Annotated[ColouringParams, Depends()],
        ) -> dict:
            fp, c = colouring.of(catalog)
            return {"title": c.legend.title, "entries": [{"label": lab, "color": col} for lab, col in c.legend.entries],
                    "note": c.legend.note, "patches": len(fp)}

        @self.router.get("/overview/at")
        def overview_at(*,
            catalog=Depends(get_catalog),
            lon: Annotated[float, Query(ge=-180, le=180)],
            lat: Annotated[float, Query(ge=-85, le=85)],
            zoom: Annotated[float, Query(ge=0, le=24, description="the map's zoom: a patch drawn as a dot is "
                                                                  "found within the dot")] = 24,
            colouring: Annotated[ColouringParams, Depends()],
            score_model: Annotated[str | None, Query(description="with color_by=domain or date: also give this "
                                                                 "model's stored mIoU", pattern=ID_PATTERN)] = None,
        ) -> JSONResponse:
            fp, c = colouring.of(catalog)
            row = patch_near(fp, lon, lat, zoom)
            score_of = (catalog_colouring(catalog, "miou", score_model, colouring.protocol)[1]
                        if score_model and colouring.color_by in ("domain", "date") and row is not None else None)
            body = ({"hit": False} if row is None
                    else {"hit": True, **describe(fp, c, colouring.color_by, row, score_of)})
            return JSONResponse(body, headers={"Access-Control-Allow-Origin": "*"})
