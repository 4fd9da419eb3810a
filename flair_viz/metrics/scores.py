"""Scores and views, from stored matrices only: protocols, IoU/F1/mIoU/OA, filters, comparisons, rankings.

Scores are computed from the *summed* matrix, like IGN's FLAIR scripts (dataset-level IoU, not a mean
of per-patch IoUs). A class absent from both truth and prediction has an undefined IoU (NaN); mIoU is
the mean over the defined ones (``nanmean``, as FLAIR's ``generate_miou.py``), and :class:`Scores`
lists the classes it left out so a page can say so.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from flair_viz.core import classes
from flair_viz.core.errors import InvalidInput
from flair_viz.metrics.confusion import N
from flair_viz.metrics.store import MetricsTable

PROTOCOLS = ("flair1", "full")


# --------------------------------------------------------------------------------------------
# Views and scores, from matrices only
# --------------------------------------------------------------------------------------------
def _check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise InvalidInput(f"Unknown protocol {protocol!r}", "use 'flair1' (13 classes, mIoU over 12) or 'full' (19)")


def protocol_members(protocol: str) -> list[list[int]]:
    """FLAIR-1 values behind each class of a view (flair1: the last one is 13..19 merged as "other")."""
    _check_protocol(protocol)
    if protocol == "full":
        return [[v] for v in range(1, N + 1)]
    lut = classes.protocol_flair1_lut()
    return [[v for v in range(1, N + 1) if lut[v] == k] for k in range(1, classes.PROTOCOL_FLAIR1_N + 1)]


def protocol_colors(protocol: str) -> list[str]:
    """Bar colours of a view: the FLAIR colour of each class; merged "other" takes the colour of 19 "other"."""
    return [classes.BY_VALUE[m[0]].color if len(m) == 1 else classes.BY_KEY["other"].color
            for m in protocol_members(protocol)]


def miou_classes(protocol: str) -> int:
    """How many leading classes the mIoU averages: 12 in the FLAIR-1 protocol, all 19 in the full view."""
    _check_protocol(protocol)
    return classes.PROTOCOL_FLAIR1_MIOU_N if protocol == "flair1" else N


def view(cm: np.ndarray, protocol: str) -> np.ndarray:
    """A 19×19 matrix (or a stack ``(..., 19, 19)``) in a protocol's classes, by summing merged rows/columns."""
    members = protocol_members(protocol)
    merge = np.zeros((N, len(members)), dtype=np.int64)
    for k, vals in enumerate(members):
        merge[[v - 1 for v in vals], k] = 1
    return merge.T @ cm @ merge


@dataclass(frozen=True)
class Scores:
    """Per-class and headline scores of one matrix in one protocol; NaN means undefined (no pixels)."""

    protocol: str
    names: list[str]
    matrix: np.ndarray
    iou: np.ndarray
    f1: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    miou: float
    oa: float
    undefined_in_miou: list[str]

    @property
    def support(self) -> np.ndarray:
        return self.matrix.sum(axis=1)

    def table(self) -> pd.DataFrame:
        """One row per class, for display and CSV export."""
        return pd.DataFrame({"class": self.names, "iou": self.iou, "f1": self.f1, "precision": self.precision,
                             "recall": self.recall, "truth_pixels": self.support,
                             "predicted_pixels": self.matrix.sum(axis=0),
                             "in_miou": [i < miou_classes(self.protocol) for i in range(len(self.names))]})


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def iou_miou_oa(cm: np.ndarray, protocol: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class IoU, mIoU (mean of the defined IoUs of the protocol's mIoU classes) and OA of a matrix in
    the protocol's classes, or of a stack ``(n, K, K)`` of them (the overview scores every patch at once).
    NaN where undefined (no pixels). The one formula :func:`scores` and the overview map share."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    iou = _ratio(tp, cm.sum(axis=-1) + cm.sum(axis=-2) - tp)
    head = iou[..., : miou_classes(protocol)]
    defined = np.isfinite(head)
    miou = _ratio(np.where(defined, head, 0).sum(axis=-1), defined.sum(axis=-1).astype(np.float64))
    return iou, miou, _ratio(tp.sum(axis=-1), cm.sum(axis=(-2, -1)))


def scores(cm19: np.ndarray, protocol: str = "flair1") -> Scores:
    """IoU, F1, precision, recall per class, mIoU (nanmean over the protocol's mIoU classes) and OA."""
    cm = view(np.asarray(cm19, dtype=np.int64), protocol)
    tp = np.diag(cm).astype(np.float64)
    truth_n, pred_n = cm.sum(axis=1), cm.sum(axis=0)
    fp, fn = pred_n - tp, truth_n - tp
    iou, miou, oa = iou_miou_oa(cm, protocol)
    k = miou_classes(protocol)
    names = classes.protocol_names(protocol)
    return Scores(protocol=protocol, names=names, matrix=cm, iou=iou, f1=_ratio(2 * tp, 2 * tp + fp + fn),
                  precision=_ratio(tp, pred_n), recall=_ratio(tp, truth_n), miou=float(miou), oa=float(oa),
                  undefined_in_miou=[names[i] for i in range(k) if np.isnan(iou[i])])


def normalise(cm: np.ndarray, how: str) -> np.ndarray:
    """``counts``, ``recall`` (rows sum to 1) or ``precision`` (columns sum to 1); empty rows/columns are NaN."""
    cm = np.asarray(cm, dtype=np.float64)
    if how == "counts":
        return cm
    if how == "recall":
        return _ratio(cm, np.broadcast_to(cm.sum(axis=1, keepdims=True), cm.shape))
    if how == "precision":
        return _ratio(cm, np.broadcast_to(cm.sum(axis=0, keepdims=True), cm.shape))
    raise InvalidInput(f"Unknown normalisation {how!r}", "use counts, recall or precision")


# --------------------------------------------------------------------------------------------
# Filters, comparisons and click-through, all on stored matrices
# --------------------------------------------------------------------------------------------
def filter_mask(table: MetricsTable, domains: Iterable[str] | None = None, zones: Iterable[str] | None = None,
                date_range: tuple[object, object] | None = None, patches: Iterable[str] | None = None,
                models: Iterable[str] | None = None) -> np.ndarray:
    """Rows matching every given filter (``None`` or empty = no filter on that field)."""
    meta = table.meta
    mask = np.ones(len(meta), dtype=bool)
    for col, wanted in (("domain", domains), ("zone", zones), ("patch", patches), ("model", models)):
        if wanted:
            mask &= meta[col].isin(list(wanted)).to_numpy()
    if date_range is not None:
        lo, hi = (pd.Timestamp(d) if d is not None else None for d in date_range)
        dates = table.dates
        if lo is not None:
            mask &= (dates >= lo).to_numpy(dtype=bool, na_value=False)
        if hi is not None:
            mask &= (dates <= hi).to_numpy(dtype=bool, na_value=False)
    return mask


def compare_models(table: MetricsTable, model_a: str, model_b: str, protocol: str = "flair1",
                   mask: np.ndarray | None = None) -> tuple[pd.DataFrame, Scores, Scores, list[str]]:
    """Per-class IoU/F1 of A and B and the delta B − A, on the patches *both* models predicted.

    Restricting to common patches keeps the comparison fair: otherwise a model scored on easier
    patches would look better. Returns the table, both scores and the common patches.
    """
    sel = np.ones(len(table), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    models = table.meta["model"].to_numpy()
    patches = table.meta["patch"].to_numpy()
    common = sorted(set(patches[sel & (models == model_a)]) & set(patches[sel & (models == model_b)]))
    in_common = np.isin(patches, common)
    a = scores(table.total(sel & in_common & (models == model_a)), protocol)
    b = scores(table.total(sel & in_common & (models == model_b)), protocol)
    df = pd.DataFrame({"class": a.names, f"iou_{model_a}": a.iou, f"iou_{model_b}": b.iou, "iou_delta": b.iou - a.iou,
                       f"f1_{model_a}": a.f1, f"f1_{model_b}": b.f1, "f1_delta": b.f1 - a.f1})
    return df, a, b, common


def rank_patches(table: MetricsTable, truth_class: int, pred_class: int, protocol: str = "flair1",
                 mask: np.ndarray | None = None) -> pd.DataFrame:
    """Patches where ``truth_class`` was predicted as ``pred_class`` (1-based classes of the view), most pixels first."""
    k = len(protocol_members(protocol))
    if not (1 <= truth_class <= k and 1 <= pred_class <= k):
        raise InvalidInput(f"Class {truth_class}->{pred_class} is outside the {protocol} view (1..{k})",
                           "pick a cell of the confusion matrix")
    sel = np.ones(len(table), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    sub = table.select(sel)
    if not len(sub):
        return pd.DataFrame(columns=["patch", "model", "domain", "zone", "date", "pixels", "share_of_truth",
                                     "truth_id", "pred_id"])
    v = view(sub.matrices, protocol)
    pixels = v[:, truth_class - 1, pred_class - 1]
    truth_px = v[:, truth_class - 1, :].sum(axis=1)
    df = sub.meta[["patch", "model", "domain", "zone", "date", "truth_id", "pred_id"]].copy()
    df["pixels"] = pixels
    df["share_of_truth"] = _ratio(pixels.astype(np.float64), truth_px)
    df = df[df["pixels"] > 0].sort_values(["pixels", "patch"], ascending=[False, True]).reset_index(drop=True)
    return df[["patch", "model", "domain", "zone", "date", "pixels", "share_of_truth", "truth_id", "pred_id"]]


def summary(sc: Scores) -> dict:
    """A JSON-ready summary (the CLI's ``--json``): per-class IoU, mIoU, OA, matrix rows=truth, cols=prediction."""
    def num(x: float) -> float | None:
        return None if np.isnan(x) else round(float(x), 6)

    return {"protocol": sc.protocol, "classes": sc.names, "miou": num(sc.miou),
            "miou_classes": sc.names[: miou_classes(sc.protocol)], "undefined_in_miou": sc.undefined_in_miou,
            "overall_accuracy": num(sc.oa), "iou": {n: num(v) for n, v in zip(sc.names, sc.iou)},
            "f1": {n: num(v) for n, v in zip(sc.names, sc.f1)},
            "confusion_matrix": {"rows": "truth", "columns": "prediction", "values": sc.matrix.tolist()}}


def top_confusions(cm: np.ndarray, n: int = 10) -> list[tuple[int, int, int]]:
    """The ``n`` largest off-diagonal cells as (truth class, predicted class, pixels), 1-based: the worst confusions."""
    cm = np.asarray(cm)
    off = cm.astype(np.int64).copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(off, axis=None, kind="stable")[::-1][:n]
    return [(int(i // cm.shape[1]) + 1, int(i % cm.shape[1]) + 1, int(off.flat[i])) for i in order if off.flat[i] > 0]
