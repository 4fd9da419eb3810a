"""The titiler factory of FLAIR Viz: ``/datasets/{dataset_id}/...`` resolved through the catalog.

Shape follows titiler's ``factory.py``: :class:`DatasetTilerFactory` is a ``TilerFactory`` whose
*path dependency* resolves the dataset ID through the catalog, so no request parameter is ever a
path or a URL. Feature routes under ``/datasets/{dataset_id}`` (live prediction, confusion) are
titiler ``FactoryExtension``s: they reuse this factory's dataset and catalog dependencies (injected,
never imported) and its TMS validation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal

from attrs import define
from fastapi import Depends, Path, Query, Request
from rio_tiler.colormap import cmap as rio_cmap
from titiler.core.dependencies import BidxParams, ImageRenderingParams
from titiler.core.factory import TilerFactory

from flair_viz.core import classes
from flair_viz.core.catalog import ID_RE, Catalog, Dataset
from flair_viz.core.errors import InvalidInput
from flair_viz.core.raster import PRESET_BANDS, tile_source

Preset = Literal["rgb", "irc", "elevation"]
ELEVATION_RESCALE = "0,60"  # nDSM in FLAIR is metres-ish uint8; most relief sits below 60

DatasetId = Annotated[str, Path(description="Catalog dataset ID (see /datasets)", pattern=ID_RE.pattern)]


def get_catalog(request: Request) -> Catalog:
    """The catalog of this app (reloaded when its file changes)."""
    return request.app.state.catalog.get()


def get_dataset(dataset_id: DatasetId, request: Request) -> Dataset:
    """Resolve a dataset ID; an unknown ID is :class:`UnknownDataset` (404 from the status table)."""
    return get_catalog(request).get(dataset_id)


def dataset_path(dataset: Annotated[Dataset, Depends(get_dataset)]) -> str:
    """titiler path dependency: the file path comes from the catalog, never from the request.

    FLAIR-1 masks' ``LOCAL_CS`` CRS is given its real EPSG:2154 here (:func:`raster.tile_source`).
    """
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


@define(kw_only=True)
class DatasetTilerFactory(TilerFactory):
    """A TilerFactory bound to the catalog: ``/datasets/{dataset_id}/...`` with presets and palettes."""

    path_dependency: Callable[..., str] = dataset_path
    layer_dependency: Callable[..., BidxParams] = layer_params
    colormap_dependency: Callable[..., dict | None] = colormap_params
    render_dependency: Callable[..., ImageRenderingParams] = render_params
    # titiler already has a ``dataset_dependency`` (nodata, resampling...): ours is the catalog entry
    catalog_dataset_dependency: Callable[..., Dataset] = get_dataset
    catalog_dependency: Callable[..., Catalog] = get_catalog
    add_viewer: bool = False
    add_part: bool = False


