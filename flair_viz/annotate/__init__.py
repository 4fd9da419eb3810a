"""Rank places to annotate: score each cell of the FLAIR patch grid from a model's probabilities.

Annotation is costly, so a team labels where the model is unsure (entropy, margin), wrong (ground
truth), inconsistent (two models disagree) or sees rare classes. The package, by job:

- :mod:`~flair_viz.annotate.grid`: the 102.4 m FLAIR grid, cell IDs, snapping to whole patches;
- :mod:`~flair_viz.annotate.scoring`: the raw per-cell components from probabilities (arrays or files);
- :mod:`~flair_viz.annotate.ranking`: weights, rare classes, the combined score, spacing, exports;
- :mod:`~flair_viz.annotate.scenes`: catalog images as scenes (ground truth, prediction, scoring);
- :mod:`~flair_viz.annotate.selections`: the selections GeoPackage and its exports;
- :mod:`~flair_viz.annotate.routes`: ``GET /datasets/{id}/candidates/{model}`` on the tile server;
- :mod:`~flair_viz.annotate.cli`: ``flair-viz candidates`` and ``flair-viz selections``.

This module re-exports the public names, so ``from flair_viz import annotate; annotate.rank(...)``
works. Submodules import their siblings directly, never this facade.
"""

from __future__ import annotations

from flair_viz.annotate.grid import (
    FLAIR_CELL_M,
    FLAIR_PATCH_PX,
    FLAIR_RES_M,
    SUB_GRIDS_PX,
    Grid,
    cell_id,
    cell_m_for,
    snap,
)
from flair_viz.annotate.ranking import (
    DEFAULT_WEIGHTS,
    RARE_BELOW,
    candidate_table,
    check_weights,
    combine,
    combined,
    concat_cells,
    minmax,
    parse_weights,
    pick,
    rank,
    rare_classes,
    summarise_region,
)
from flair_viz.annotate.scenes import (
    Probabilities,
    Scene,
    predict_scene,
    read_truth,
    scene,
    scene_at,
    scene_grid,
    score_dataset,
    score_scene,
)
from flair_viz.annotate.scoring import (
    CELL_COLUMNS,
    COMPONENTS,
    COUNT_COLS,
    cells_from_geojson,
    cells_geojson,
    score_cells,
    score_files,
)
from flair_viz.core.uncertainty import PixelStats, pixel_stats

__all__ = [
    "CELL_COLUMNS", "COMPONENTS", "COUNT_COLS", "DEFAULT_WEIGHTS", "FLAIR_CELL_M", "FLAIR_PATCH_PX", "FLAIR_RES_M",
    "RARE_BELOW", "SUB_GRIDS_PX", "Grid", "PixelStats", "Probabilities", "Scene", "candidate_table", "cell_id",
    "cell_m_for", "cells_from_geojson", "cells_geojson", "check_weights", "combine", "combined", "concat_cells",
    "minmax", "parse_weights", "pick", "pixel_stats", "predict_scene", "rank", "rare_classes", "read_truth", "scene",
    "scene_at", "scene_grid", "score_cells", "score_dataset", "score_files", "score_scene", "snap", "summarise_region",
]
