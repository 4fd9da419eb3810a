"""Catalog images as scenes to score: the glue the CLI, the tile server's candidates route and the page share.

A scene is an aerial image plus what scoring needs: its header and its ground truth (the catalog's
:meth:`~flair_viz.core.catalog.Catalog.truth_of`, the same truth every metric and error layer uses).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import geopandas as gpd
import numpy as np
import shapely

from flair_viz.annotate.grid import FLAIR_CELL_M, Grid
from flair_viz.annotate.scoring import score_cells
from flair_viz.core import classes, raster
from flair_viz.core.catalog import Catalog
from flair_viz.core.errors import AlignmentError, InvalidInput, context


@dataclass(frozen=True)
class Scene:
    """An aerial image of the catalog with what scoring needs: its header and its ground truth (if any)."""

    dataset: str
    info: raster.RasterInfo
    truth_id: str | None


class Probabilities(NamedTuple):
    """A model's probabilities on a scene: (K, H, W), the FLAIR-1 value of each band, the model's class count.

    ``n_classes`` is what entropy is normalised by; ``None`` means "one class per band" (a GeoTIFF
    whose model is unknown).
    """

    proba: np.ndarray
    class_values: np.ndarray | None = None
    n_classes: int | None = None


def scene(cat: Catalog, dataset_id: str) -> Scene:
    """Resolve an image dataset and its ground truth; predictions and masks are not images to score."""
    ds = cat.get(dataset_id)
    if ds.role != "image":
        raise InvalidInput(f"Dataset {ds.id} is a {ds.role} raster; candidates are scored on aerial images",
                           "give an image ID (IMG_...), see `flair-viz catalog list`")
    info = raster.check_image(ds.path, ds.bands or None)
    truth = cat.truth_of(ds)
    return Scene(ds.id, info, truth.id if truth else None)


def scene_grid(sc: Scene, cell_m: float = FLAIR_CELL_M) -> Grid:
    return Grid.for_scene(sc.info.transform, sc.info.width, sc.info.height, sc.info.crs, cell_m)


def read_truth(cat: Catalog, sc: Scene) -> np.ndarray | None:
    """The scene's ground truth in FLAIR-1 values, checked to lie on the image's pixel grid."""
    if sc.truth_id is None:
        return None
    t = cat.get(sc.truth_id)
    info = raster.check_mask(t.path, t.nomenclature, scan_values=False)
    raster.check_same_grid(sc.info, info)
    return classes.to_flair1(raster.read(t.path, 1), t.nomenclature)


def predict_scene(cat: Catalog, dataset_id: str, model_id: str) -> Probabilities:
    """Run a model on a whole image through the inference module (torch: the tile server and CLI only)."""
    from flair_viz.predict import (
        inference,  # torch is heavy: import only when predicting
        models,
    )

    sc = scene(cat, dataset_id)
    ds = cat.get(dataset_id)
    model = models.load_model(model_id)
    image = raster.read(ds.path)
    with context(f"{dataset_id} ({ds.path.name})"):  # many scenes are ranked: say which one the model cannot read
        proba = np.asarray(inference.predict_proba_array(model, image, bands=ds.bands or None))
    if proba.shape[1:] != (sc.info.height, sc.info.width):
        raise AlignmentError(f"Model {model_id} returned {proba.shape} probabilities for a "
                             f"{sc.info.width}x{sc.info.height} image", "report this as a bug in the inference module")
    return Probabilities(proba, np.asarray(inference.PROBA_VALUES), int(model.card.classes))


def score_dataset(cat: Catalog, dataset_id: str, pred: Probabilities, *, pred_b: Probabilities | None = None,
                  cell_m: float = FLAIR_CELL_M, use_truth: bool = True) -> gpd.GeoDataFrame:
    """:func:`~flair_viz.annotate.scoring.score_cells` for a catalog image, with its ground truth when it has one."""
    sc = scene(cat, dataset_id)
    proba = pred.proba
    if proba.shape[1:] != (sc.info.height, sc.info.width):
        raise AlignmentError(f"Probabilities are {proba.shape[2]}x{proba.shape[1]} px but {dataset_id} is "
                             f"{sc.info.width}x{sc.info.height}", "predict on the same image")
    proba_b, values_b, n_b = pred_b if pred_b is not None else (None, None, None)
    return score_cells(proba, sc.info.transform, sc.info.crs, dataset=dataset_id,
                       truth=read_truth(cat, sc) if use_truth else None, proba_b=proba_b,
                       class_values=pred.class_values, class_values_b=values_b,
                       n_classes=pred.n_classes, n_classes_b=n_b, cell_m=cell_m)


def score_scene(cat: Catalog, dataset_id: str, model_id: str, model_b: str | None = None, *,
                cell_m: float = FLAIR_CELL_M, use_truth: bool = True) -> gpd.GeoDataFrame:
    """Predict with one or two models and score the scene's cells: what the candidates route serves."""
    pred = predict_scene(cat, dataset_id, model_id)
    pred_b = predict_scene(cat, dataset_id, model_b) if model_b else None
    return score_dataset(cat, dataset_id, pred, pred_b=pred_b, cell_m=cell_m, use_truth=use_truth)


def scene_at(geom: shapely.Geometry, scenes: Sequence[Scene]) -> Scene | None:
    """The scene a drawn region overlaps most (its grid is the one to snap to), or None."""
    best, best_area = None, 0.0
    for sc in scenes:
        area = geom.intersection(shapely.box(*sc.info.bounds)).area
        if area > best_area:
            best, best_area = sc, area
    return best
