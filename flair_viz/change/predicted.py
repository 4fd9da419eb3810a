"""Change from predictions: a model predicts two image vintages, and the change is counted between them,
with the change the model is unsure of counted apart.

Where no ground truth exists for the later date (the CoSIA situation) the change must come from a
model's predictions. A stakeholder then needs to know how much of that change the model is sure of:
a changed pixel is **uncertain change** where either prediction's margin is low, i.e. where the gap
between the top-1 and top-2 class probabilities (:func:`flair_viz.core.uncertainty.pixel_stats`, the
margin the map and the annotation ranking use) is below ``margin_threshold`` (default
:data:`DEFAULT_MARGIN_THRESHOLD` = 0.2: the winning class leads the runner-up by less than 20 points).

Predictions are made once per (image file as it is now, model weights) with the predict package's
public :func:`flair_viz.predict.inference.predict_file` and cached under ``$FLAIR_VIZ_CACHE``
(``change_predictions/<model>/<image key>/``, with a manifest), so re-running or moving the threshold
never predicts again. torch is imported only when a prediction is missing.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio.warp
import rasterio.windows
from rasterio.windows import Window

from flair_viz.change.align import Alignment, ClassSource, align, iter_windows
from flair_viz.change.compute import DEFAULT_BLOCK, ChangeResult, compute_change
from flair_viz.change.grouping import N, ZanGrouping, zan_flows
from flair_viz.change.qml import write_qml
from flair_viz.core import config, raster, uncertainty
from flair_viz.core.catalog import Catalog
from flair_viz.core.cog import cog_writer
from flair_viz.core.errors import AlignmentError, InvalidInput, NotFound
from flair_viz.core.jobs import is_complete, write_manifest
from flair_viz.core.stamps import file_stamp

DEFAULT_MARGIN_THRESHOLD = 0.2
CONFIDENCE_CODES = {1: "sure change", 2: "uncertain change"}  # the confidence COG; 0 = no change / no data
CONFIDENCE_COLORS = {1: (228, 26, 28, 255), 2: (255, 200, 0, 255)}  # red: sure, amber: uncertain


@dataclass(frozen=True)
class ImageVintage:
    """An aerial image to predict: a catalog image or a file."""

    path: Path
    name: str
    vintage: str | None = None
    simulated: bool = False
    bands: tuple[str, ...] | None = None


def resolve_image(ref: str | os.PathLike[str], catalog: Catalog | None) -> ImageVintage:
    """A catalog image ID or an image file."""
    if catalog is not None and str(ref) in catalog:
        ds = catalog.get(str(ref))
        if ds.role != "image":
            raise InvalidInput(f"Dataset {ds.id} has role {ds.role!r}; change from predictions needs two images",
                               "pick two aerial images (IMG_...) of the same place at two dates")
        return ImageVintage(ds.path, ds.id, ds.vintage, ds.simulated, tuple(ds.bands) or None)
    p = Path(ref)
    if not p.is_file():
        raise NotFound(f"{ref!s} is neither a catalog image ID nor an existing file",
                       "give an image ID (see `flair-viz catalog list`) or the path of an aerial image")
    return ImageVintage(p.resolve(), p.name)


def cached_prediction(model: str, image: ImageVintage, device: str | None = None) -> tuple[Path, Path, bool]:
    """(class COG, probability COG, predicted now?) of ``model`` on ``image``, predicted only if not cached."""
    from flair_viz.predict.cards import get_card, resolve_checkpoint  # no torch

    card = get_card(model)
    _, checksum = resolve_checkpoint(card)
    stamp = file_stamp(image.path)
    key = hashlib.sha256(f"{stamp['path']}|{image.bands}".encode()).hexdigest()[:16]
    folder = config.cache_dir() / "change_predictions" / card.id / key
    pred, proba = folder / "PRED.tif", folder / "PROBA.tif"
    inputs = {"image": stamp, "bands": list(image.bands) if image.bands else None,
              "model": {"id": card.id, "sha256": checksum}}
    if is_complete(pred, inputs, [pred, proba]):
        return pred, proba, False
    from flair_viz.predict.inference import predict_file  # torch: only when a prediction is missing

    predict_file(card, image.path, pred, proba_path=proba, device=device, progress=False, bands=image.bands)
    write_qml(pred, "class")  # the cached class COG opens coloured in QGIS too
    write_manifest(pred, inputs, [pred, proba])
    return pred, proba, True


@dataclass
class PredictedChange:
    """The change between two predictions, and the pixels of it where either prediction is unsure."""

    result: ChangeResult
    uncertain_counts: np.ndarray  # (N, N) pixels counted in result.counts where either margin is low
    margin_threshold: float
    model: str
    images: tuple[ImageVintage, ImageVintage]
    predicted_now: tuple[bool, bool]

    def _ha(self, counts: np.ndarray) -> float:
        c = counts[1:, 1:]
        return float((c.sum() - np.trace(c)) * self.result.ha_per_pixel)

    def uncertainty(self) -> dict[str, Any]:
        """Changed hectares and ZAN flows, split into sure and uncertain change."""
        sure = self.result.counts - self.uncertain_counts
        ha = self.result.ha_per_pixel
        return {"margin_threshold": self.margin_threshold,
                "rule": "uncertain = changed pixel where either prediction's top-1 minus top-2 probability is "
                        f"below {self.margin_threshold}",
                "changed_ha": self.result.changed_area_ha(), "sure_changed_ha": self._ha(sure),
                "uncertain_changed_ha": self._ha(self.uncertain_counts),
                "zan_sure": zan_flows(sure, self.result.grouping, ha),
                "zan_uncertain": zan_flows(self.uncertain_counts, self.result.grouping, ha),
                "model": self.model, "images": [i.name for i in self.images],
                "simulated": any(i.simulated for i in self.images), "predicted_now": list(self.predicted_now)}


def _low_margin(ds, win: Window, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(low margin, valid) of one block of a probability COG."""
    stats = uncertainty.pixel_stats(ds.read(window=win))
    return stats.valid & (stats.margin < threshold), stats.valid


def predictions_change(model: str, image_a: str | os.PathLike[str], image_b: str | os.PathLike[str], *,
                       catalog: Catalog | None = None, margin_threshold: float = DEFAULT_MARGIN_THRESHOLD,
                       grouping: ZanGrouping | str | os.PathLike[str] | None = None, device: str | None = None,
                       out_dir: str | os.PathLike[str] | None = None,
                       block_size: int = DEFAULT_BLOCK) -> PredictedChange:
    """Predict both image vintages (cached), count their change, and count apart the uncertain change.

    With ``out_dir``: ``change.tif``, ``flow.tif`` and ``confidence.tif`` (1 sure change, 2 uncertain
    change) are written there, on the first image's grid.
    """
    if not 0 < margin_threshold < 1:
        raise InvalidInput(f"Margin threshold {margin_threshold} is outside 0..1",
                           f"give a top-1 minus top-2 probability gap such as {DEFAULT_MARGIN_THRESHOLD}")
    imgs = (resolve_image(image_a, catalog), resolve_image(image_b, catalog))
    if imgs[0].path == imgs[1].path:
        raise InvalidInput(f"Both image vintages are {imgs[0].name}", "pick two images of one place at two dates")
    _check_overlap(*imgs)  # before any prediction: predicting images of two places would waste minutes
    preds = [cached_prediction(model, i, device) for i in imgs]
    srcs = [ClassSource(path=p, dataset_id=f"{model}:{i.name}", vintage=i.vintage, simulated=i.simulated,
                        role="prediction", title=f"{model} prediction of {i.name}") for (p, _, _), i in zip(preds, imgs)]
    al = align(*srcs)
    if al.resampled:
        raise AlignmentError(f"{imgs[0].name} and {imgs[1].name} are not on one pixel grid, so their prediction "
                             "margins cannot be compared pixel by pixel",
                             "resample the second image onto the first one's grid (gdalwarp -tr -te -tap)")
    out = Path(out_dir) if out_dir else None
    result = compute_change(srcs[0], srcs[1], grouping=grouping, block_size=block_size,
                            change_cog=out / "change.tif" if out else None, flow_cog=out / "flow.tif" if out else None)
    unc = np.zeros(N * N, dtype=np.int64)
    dc, dr = al.after_offset[0] - int(al.window.col_off), al.after_offset[1] - int(al.window.row_off)
    with raster.open_raster(preds[0][0]) as ca, raster.open_raster(preds[1][0]) as cb, \
            raster.open_raster(preds[0][1]) as pa, raster.open_raster(preds[1][1]) as pb, \
            _confidence_writer(out, al) as write:
        for win in iter_windows(al.window, block_size):
            win_b = Window(win.col_off + dc, win.row_off + dr, win.width, win.height)
            a_cls, b_cls = ca.read(1, window=win), cb.read(1, window=win_b)
            (low_a, _), (low_b, _) = _low_margin(pa, win, margin_threshold), _low_margin(pb, win_b, margin_threshold)
            changed = (a_cls != b_cls) & (a_cls > 0) & (b_cls > 0)
            unsure = changed & (low_a | low_b)
            idx = a_cls[unsure].astype(np.int64) * N + b_cls[unsure]
            unc += np.bincount(idx, minlength=N * N)
            if write is not None:
                write(win, np.where(unsure, 2, np.where(changed, 1, 0)).astype(np.uint8))
    if out:
        result.outputs["confidence_cog"] = str(out / "confidence.tif")
    return PredictedChange(result, unc.reshape(N, N), margin_threshold, model, imgs, (preds[0][2], preds[1][2]))


def _check_overlap(a: ImageVintage, b: ImageVintage) -> None:
    """Refuse two images of different places from their headers (the class rasters are checked again later)."""
    ia, ib = raster.describe(a.path), raster.describe(b.path)
    bb = ib.bounds if ib.crs == ia.crs else rasterio.warp.transform_bounds(ib.crs, ia.crs, *ib.bounds)
    if min(ia.bounds[2], bb[2]) <= max(ia.bounds[0], bb[0]) or min(ia.bounds[3], bb[3]) <= max(ia.bounds[1], bb[1]):
        raise AlignmentError(f"{a.name} and {b.name} do not overlap: {a.name} covers {tuple(round(v, 2) for v in ia.bounds)}, "
                             f"{b.name} covers {tuple(round(v, 2) for v in bb)}",
                             "pick two images of the same place at two dates")


@contextlib.contextmanager
def _confidence_writer(out: Path | None, al: Alignment) -> Iterator[Callable[[Window, np.ndarray], None] | None]:
    """Block writer of ``confidence.tif`` over the overlap (None when no output folder is given)."""
    if out is None:
        yield None
        return
    w = al.window
    profile = {"width": int(w.width), "height": int(w.height), "count": 1, "dtype": "uint8", "nodata": 0,
               "crs": al.crs, "transform": rasterio.windows.transform(w, al.transform)}
    with cog_writer(out / "confidence.tif", profile) as dst:
        dst.write_colormap(1, {0: (0, 0, 0, 0), **CONFIDENCE_COLORS})

        def write(win: Window, data: np.ndarray) -> None:
            dst.write(data, 1, window=Window(win.col_off - w.col_off, win.row_off - w.row_off, win.width, win.height))

        yield write


def confidence_rgba(path: str | os.PathLike[str]) -> np.ndarray:
    """(H, W, 4) RGBA of a confidence COG (sure change red, uncertain amber, the rest transparent), for a picture."""
    pal = np.zeros((256, 4), dtype=np.uint8)
    for v, rgba in CONFIDENCE_COLORS.items():
        pal[v] = rgba
    return pal[raster.read(path, 1)]
