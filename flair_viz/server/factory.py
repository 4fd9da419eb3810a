"""The titiler factory of FLAIR Viz: ``/datasets/{dataset_id}/...`` resolved through the catalog.

Shape follows titiler's ``factory.py``: :class:`DatasetTilerFactory` is a ``TilerFactory`` whose
*path dependency* resolves the dataset ID through the catalog, so no request parameter is ever a
path or a URL. Feature routes under ``/datasets/{dataset_id}`` (live prediction, confusion) are
titiler ``FactoryExtension``s: they reuse this factory's dataset and catalog dependencies (injected,
never imported) and its TMS validation.

Every route has a bounded cost: the tile routes refuse a zoom outside the dataset's range and a
``tilesize=`` over the cap, and titiler's size parameters (``buffer``, ``padding``, ``width``,
``height``, ``max_size``, histogram bins, categories, ``cover_scale``) are checked by the dependencies
below against the caps of the one settings table (:mod:`flair_viz.core.tiling`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Literal

from attrs import define, field
from fastapi import Depends, Path, Query, Request
from morecantile.defaults import TileMatrixSets
from rio_tiler.colormap import cmap as rio_cmap
from rio_tiler.io.base import BaseReader
from titiler.core.dependencies import (
    BidxParams,
    HistogramParams,
    ImageRenderingParams,
    PartFeatureParams,
    PreviewParams,
    StatisticsParams,
    TileParams,
)
from titiler.core.factory import TilerFactory

from flair_viz.core import classes, config
from flair_viz.core.catalog import Catalog, Dataset
from flair_viz.core.errors import InvalidInput
from flair_viz.core.handles import KeptOpenReader
from flair_viz.core.raster import PRESET_BANDS, tile_source
from flair_viz.core.tiling import SUPPORTED_TMS, DatasetId, abandon_if_gone, check_cap, check_tilesize, check_zoom

Preset = Literal["rgb", "irc", "elevation"]
ELEVATION_RESCALE = "0,60"  # nDSM in FLAIR is metres-ish uint8; most relief sits below 60


def get_catalog(request: Request) -> Catalog:
    """The catalog of this app (reloaded when its file changes)."""
    return request.app.state.catalog.get()


def get_dataset(dataset_id: DatasetId, request: Request) -> Dataset:
    """Resolve a dataset ID; an unknown ID is :class:`UnknownDataset` (404 from the status table)."""
    return get_catalog(request).get(dataset_id)


def dataset_path(dataset: Annotated[Dataset, Depends(get_dataset)], request: Request) -> str:
    """titiler path dependency: the file path comes from the catalog, never from the request.

    FLAIR-1 masks' ``LOCAL_CS`` CRS is given its real EPSG:2154 here (:func:`raster.tile_source`). Every
    titiler route resolves it in a worker thread just before reading, so it is also where a request whose
    client has gone is dropped (:func:`flair_viz.core.tiling.abandon_if_gone`).
    """
    abandon_if_gone(request)
    return tile_source(dataset.path)


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
        raise InvalidInput(f"Dataset {ds.id} has no {', '.join(missing)} band for the {preset} preset "
                            f"(bands: {', '.join(ds.bands)})", "choose another preset")
    return [ds.bands.index(b) + 1 for b in PRESET_BANDS[preset]]


def layer_params(dataset: Annotated[Dataset, Depends(get_dataset)],
                 preset: Annotated[Preset | None, Query(description="Band preset: rgb, irc or elevation")] = None) -> BidxParams:
    return BidxParams(indexes=preset_indexes(dataset, preset))


def colormap_params(dataset: Annotated[Dataset, Depends(get_dataset)],
                    preset: Annotated[Preset | None, Query()] = None) -> dict | None:
    """Class rasters always get the FLAIR palette (0 transparent); elevation gets viridis."""
    if dataset.is_class_raster:
        return classes.colormap(dataset.nomenclature)
    if preset == "elevation":
        return rio_cmap.get("viridis")
    return None


def render_params(dataset: Annotated[Dataset, Depends(get_dataset)],
                  preset: Annotated[Preset | None, Query()] = None) -> ImageRenderingParams:
    if preset == "elevation" and not dataset.is_class_raster:
        return ImageRenderingParams(rescale=[ELEVATION_RESCALE])
    return ImageRenderingParams()


# -- bounded requests: titiler's parameters under the caps of the settings table ----------------------------
@dataclass
class BoundedTileParams(TileParams):
    """``buffer=`` and ``padding=`` under the cap: one ``buffer=`` once took a server from 1 GB to 11.8 GB."""

    def __post_init__(self) -> None:
        check_cap("buffer", self.buffer, "max_buffer")
        check_cap("padding", self.padding, "max_buffer")


def _check_image_size(params: PreviewParams | PartFeatureParams) -> None:
    """``width``, ``height`` and ``max_size`` under the cap, and never one side alone: the other side would
    follow the area's shape (a thin bbox makes it any size), so its cost would have no bound."""
    for name in ("width", "height", "max_size"):
        check_cap(name, getattr(params, name), "max_image_px")
    if (params.width is None) != (params.height is None):
        given, missing = ("width", "height") if params.height is None else ("height", "width")
        raise InvalidInput(f"{given}={getattr(params, given)} without {missing}=: the other side would follow the "
                           "area's shape, with no bound", f"give both width and height (each <= "
                           f"{config.settings().max_image_px}), or max_size alone")


@dataclass
class BoundedPreviewParams(PreviewParams):
    """The preview's (and ``/statistics``') output size under the cap."""

    def __post_init__(self) -> None:
        _check_image_size(self)
        super().__post_init__()


@dataclass
class BoundedPartParams(PartFeatureParams):
    """A bbox or feature read under the cap; without any size it is read at most the cap, not at full resolution."""

    def __post_init__(self) -> None:
        _check_image_size(self)
        if self.width is None and self.max_size is None:
            self.max_size = config.settings().max_image_px
        super().__post_init__()


@dataclass
class BoundedStatisticsParams(StatisticsParams):
    """At most the cap of categories (``c=``): each one is a pass over every pixel."""

    def __post_init__(self) -> None:
        cap = config.settings().max_bins
        if len(self.categories or ()) > cap:
            raise InvalidInput(f"{len(self.categories)} categories (c=) are over this server's cap ({cap})",
                               f"ask for {cap} categories or fewer (the operator sets the cap with "
                               f"{config.env_name('max_bins')})")
        super().__post_init__()


@dataclass
class BoundedHistogramParams(HistogramParams):
    """At most the cap of histogram bins (``histogram_bins=N`` or N+1 edges)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        bins = self.bins if isinstance(self.bins, int) else len(self.bins) - 1
        check_cap("histogram_bins", bins, "max_bins")


def bounded_tilesize(tilesize: Annotated[int | None, Query()] = None) -> None:
    """The tile and TileJSON routes' own ``tilesize=`` (a route parameter in titiler, not a dependency)."""
    check_tilesize(tilesize)


def bounded_cover_scale(cover_scale: Annotated[int | None, Query()] = None) -> None:
    """``cover_scale=`` of ``POST /statistics``: the feature is rasterised at the square of it."""
    check_cap("cover_scale", cover_scale, "max_cover_scale")


def zoom_in_range(dataset: Annotated[Dataset, Depends(get_dataset)], z: Annotated[int, Path()],
                  tileMatrixSetId: Annotated[str, Path()]) -> None:  # noqa: N803 (titiler's name)
    """A tile of titiler's routes only inside the dataset's zoom range (:func:`flair_viz.core.tiling.zoom_range`)."""
    if tileMatrixSetId in SUPPORTED_TMS.list():  # an unknown set is the route's own 422
        check_zoom(tileMatrixSetId, z, dataset)


# titiler's route_dependencies: (routes matched by an example path, the dependencies they get). The tile path
# with ``.{format}`` matches both tile routes, with and without a format (``{y}.{format}`` is a valid ``{y}``).
BOUNDED_ROUTES = [
    ([{"path": "/tiles/{tileMatrixSetId}/{z}/{x}/{y}.{format}", "method": "GET"}],
     [Depends(zoom_in_range), Depends(bounded_tilesize)]),
    ([{"path": "/{tileMatrixSetId}/tilejson.json", "method": "GET"}], [Depends(bounded_tilesize)]),
    ([{"path": "/statistics", "method": "POST"}], [Depends(bounded_cover_scale)]),
]


@define(kw_only=True)
class DatasetTilerFactory(TilerFactory):
    """A TilerFactory bound to the catalog: ``/datasets/{dataset_id}/...`` with presets and palettes."""

    reader: type[BaseReader] = KeptOpenReader  # a stack's tiles share kept handles: its decoded dalles stay cached
    path_dependency: Callable[..., str] = dataset_path
    layer_dependency: Callable[..., BidxParams] = layer_params
    colormap_dependency: Callable[..., dict | None] = colormap_params
    render_dependency: Callable[..., ImageRenderingParams] = render_params
    tile_dependency: type[TileParams] = BoundedTileParams
    img_preview_dependency: type[PreviewParams] = BoundedPreviewParams
    img_part_dependency: type[PartFeatureParams] = BoundedPartParams
    stats_dependency: type[StatisticsParams] = BoundedStatisticsParams
    histogram_dependency: type[HistogramParams] = BoundedHistogramParams
    route_dependencies: list = field(factory=lambda: list(BOUNDED_ROUTES))
    supported_tms: TileMatrixSets = SUPPORTED_TMS  # the sets every feature route offers too (core.tiling.TmsId)
    # titiler already has a ``dataset_dependency`` (nodata, resampling...): ours is the catalog entry
    catalog_dataset_dependency: Callable[..., Dataset] = get_dataset
    catalog_dependency: Callable[..., Catalog] = get_catalog
    add_viewer: bool = False
    add_part: bool = False


