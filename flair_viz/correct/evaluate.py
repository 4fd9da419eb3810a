"""Parent vs fine-tuned model on patches with ground truth, training pixels reported apart.

A fine-tuned model is trained on the corrected pixels, so its score there is a training score.
Each image is predicted whole by both models (IGN zone detection, :mod:`flair_viz.predict.inference`),
counted against its ground truth with the metrics engine's confusion counter, and split in two:
pixels inside a correction (``fine-tuning pixels``) and all the others (``other pixels``). Scores
come from :func:`flair_viz.metrics.scores.scores`, so they mean what they mean on the Metrics page.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio.features

from flair_viz.core import classes, raster
from flair_viz.core.catalog import Catalog
from flair_viz.correct.labels import assign_images
from flair_viz.metrics.confusion import confusion
from flair_viz.metrics.scores import scores
from flair_viz.predict import cards, inference, models

SUBSETS: tuple[str, ...] = ("fine-tuning pixels", "other pixels")
MAX_PIXELS = 4096 * 4096  # bigger images are skipped: use `flair-viz predict` + `evaluate` for those


def _predict(model_id: str, data: np.ndarray, device: str | None, models_dirs: Sequence[Path]) -> np.ndarray:
    loaded = models.load_model(cards.get_card(model_id, models_dirs), device)
    return inference.classes_from_proba(inference.predict_proba_array(loaded, data))


def compare(parent_id: str, new_id: str, corrections, cat: Catalog, scope: str = "corrected",
            device: str | None = None, models_dirs: Sequence[Path] = ()) -> list[dict]:
    """One row per (model, subset): pixels, overall accuracy and mIoU (FLAIR-1 protocol) over the images.

    ``scope`` is ``corrected`` (images holding corrections) or ``all`` (every image with ground truth);
    ``models_dirs`` (``corrections compare --models-dir``) are searched for both cards, before ``models/``.
    """
    groups = assign_images(corrections, cat)
    images = [cat.get(i) for i in groups] if scope == "corrected" else cat.by_role("image")
    totals = {(m, s): np.zeros((classes.N_CLASSES,) * 2, np.int64) for m in (parent_id, new_id) for s in SUBSETS}
    card = cards.get_card(parent_id, models_dirs)
    for ds in images:
        truth = cat.truth_of(ds)
        if truth is None:
            continue
        info, tinfo = raster.describe(ds.path), raster.describe(truth.path)
        shape = (info.height, info.width)
        if info.width * info.height > MAX_PIXELS or (tinfo.height, tinfo.width) != shape:
            continue
        bands = ds.bands or raster.band_names_for(info.count)
        data = raster.read(ds.path, inference.band_indexes(card, tuple(bands), ds.id))
        t = classes.to_flair1(raster.read(truth.path, 1), truth.nomenclature)
        shapes = groups.get(ds.id)
        used = np.zeros(shape, bool)
        if shapes is not None:
            used = rasterio.features.rasterize([(g, 1) for g in shapes.to_crs(info.crs).geometry], out_shape=shape,
                                               transform=info.transform, fill=0, dtype="uint8") > 0
        for model_id in (parent_id, new_id):
            pred = _predict(model_id, data, device, models_dirs)
            totals[(model_id, SUBSETS[0])] += confusion(t[used], pred[used])[0]
            totals[(model_id, SUBSETS[1])] += confusion(t[~used], pred[~used])[0]
    rows = []
    for (model_id, subset), cm in totals.items():
        sc = scores(cm, "flair1")
        rows.append({"model": model_id, "role": "parent" if model_id == parent_id else "fine-tuned",
                     "pixels": subset, "truth_pixels": int(cm.sum()),
                     "overall_accuracy": None if np.isnan(sc.oa) else round(sc.oa, 4),
                     "miou": None if np.isnan(sc.miou) else round(sc.miou, 4)})
    return rows
