"""Evaluation: per-patch confusion matrices stored in Parquet, and every score derived from them.

Why per patch: analysts filter by domain, zone, date or patch and compare models. Keeping one 19×19
count matrix per truth/prediction pair makes every such view a sum of stored matrices (milliseconds),
never a re-read of rasters.

Conventions:
- class rasters are compared in FLAIR-1 values 1..19 (FLAIR-HUB rasters are converted first);
  0, the file's nodata and any value outside 1..19, in either raster, make the pixel *ignored*
  and are counted;
- matrices are int64, rows = truth, columns = prediction, index ``v - 1`` for FLAIR-1 value ``v``.

This package is a facade: the code lives in submodules named by job (``confusion``: counting;
``pairs``: what to compare; ``store``: the Parquet store; ``evaluate``: the one engine, with
``batch`` its Dask runner; ``scores``: protocol views, scores, filters and rankings; ``views``: what
the Metrics page offers and where a confusion click leads; ``tiles``: the confusion tile route; ``cli``:
``flair-viz evaluate``). Submodules import each other directly, never this facade.
"""

from flair_viz.metrics.confusion import N, confusion, confusion_torch
from flair_viz.metrics.evaluate import (
    STRIP_ROWS,
    EvaluationRun,
    compute_pair,
    evaluate,
    run_evaluation,
    serial_runner,
)
from flair_viz.metrics.pairs import (
    MSK_RE,
    PRED_RE,
    Pair,
    catalog_pairs,
    dataset_pair,
    folder_pairs,
    model_name,
    resolve_pairs,
    unpaired_predictions,
)
from flair_viz.metrics.scores import (
    PROTOCOLS,
    Scores,
    compare_models,
    filter_mask,
    miou_classes,
    normalise,
    protocol_colors,
    protocol_members,
    rank_patches,
    scores,
    summary,
    top_confusions,
    view,
)
from flair_viz.metrics.store import (
    COUNT_COLUMNS,
    KEY_COLUMNS,
    META_COLUMNS,
    MetricsTable,
    default_store,
    input_key,
)

__all__ = [
    "COUNT_COLUMNS", "KEY_COLUMNS", "META_COLUMNS", "MSK_RE", "N", "PRED_RE", "PROTOCOLS", "STRIP_ROWS",
    "EvaluationRun", "MetricsTable", "Pair", "Scores",
    "catalog_pairs", "compare_models", "compute_pair", "confusion", "confusion_torch", "dataset_pair",
    "default_store", "evaluate", "filter_mask", "folder_pairs", "input_key", "miou_classes", "model_name",
    "normalise", "protocol_colors", "protocol_members", "rank_patches", "resolve_pairs", "run_evaluation",
    "scores", "serial_runner", "summary", "top_confusions", "unpaired_predictions", "view",
]
