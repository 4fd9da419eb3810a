"""Land-cover change between two vintages: from-to matrix in hectares, ZAN flows, region breakdown.

This package is a facade; the code lives in submodules named by job:

* ``grouping``: the ZAN grouping TOML and the flows it defines (artificialisation and back);
* ``align``: the inputs (catalog IDs or files), their common grid and overlap, block reading;
* ``regions``: polygons to break a change down by;
* ``compute``: :func:`compute_change`, :class:`ChangeResult` and the change COG;
* ``masks``: how many changed pixels of a real change mask a result counts as changed;
* ``trend``: a series of N vintages, ZAN flows per interval and cumulated; ``gpkg``: per-region
  GeoPackages; ``qml``: QGIS styles beside exported COGs;
* ``pairs``: what the Change page offers to compare; ``uploads``: files uploaded there;
* ``outputs``: the CSV/JSON files of a result; ``tiles``: the change tile layer; ``batch``: many
  pairs on Dask; ``cli``: ``flair-viz change``.

Submodules import each other directly, never this facade.
"""

from flair_viz.change.align import (
    M2_PER_HA,
    NODATA_CODE,
    Alignment,
    ClassSource,
    PairReader,
    align,
    iter_windows,
    resolve,
    source_from_dataset,
)
from flair_viz.change.compute import DEFAULT_BLOCK, ChangeResult, change_codes, compute_change
from flair_viz.change.grouping import (
    DEFAULT_GROUPING_PATH,
    FLOW_ARTIFICIALISATION,
    FLOW_COLORS,
    FLOW_DEARTIFICIALISATION,
    FLOW_NAMES,
    FLOW_OTHER,
    GROUPS,
    N,
    ZanGrouping,
    load_grouping,
    zan_flows,
)
from flair_viz.change.masks import MaskAgreement, catalog_mask_agreements, mask_agreement, pair_masks
from flair_viz.change.pairs import Pair, class_rasters, list_pairs
from flair_viz.change.predicted import (
    DEFAULT_MARGIN_THRESHOLD,
    PredictedChange,
    confidence_rgba,
    predictions_change,
)
from flair_viz.change.regions import Regions, load_regions, rasterize_regions
from flair_viz.change.trend import Trend, catalog_series, check_series, compute_trend
from flair_viz.change.uploads import store_upload

__all__ = [
    "DEFAULT_BLOCK", "DEFAULT_GROUPING_PATH", "FLOW_ARTIFICIALISATION", "FLOW_COLORS", "FLOW_DEARTIFICIALISATION",
    "FLOW_NAMES", "FLOW_OTHER", "GROUPS", "M2_PER_HA", "N", "NODATA_CODE",
    "Alignment", "ChangeResult", "ClassSource", "MaskAgreement", "Pair", "PairReader", "Regions", "ZanGrouping",
    "align", "catalog_mask_agreements", "change_codes", "class_rasters", "compute_change", "iter_windows", "list_pairs", "load_grouping",
    "load_regions", "mask_agreement", "pair_masks", "rasterize_regions", "resolve", "Trend", "catalog_series", "DEFAULT_MARGIN_THRESHOLD", "PredictedChange", "confidence_rgba",
    "predictions_change", "check_series", "compute_trend", "source_from_dataset", "store_upload", "zan_flows",
]
