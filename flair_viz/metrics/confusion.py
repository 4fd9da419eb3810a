"""Counting: the 19×19 confusion matrix of two class arrays, with numpy or torch.

Both counters take FLAIR-1 arrays (any other value, 0 included, is *ignored* and counted as such)
and give the same int64 matrix, rows = truth, columns = prediction, index ``v - 1`` for value ``v``.
"""

from __future__ import annotations

import numpy as np

from flair_viz.core import classes
from flair_viz.core.errors import AlignmentError, InvalidRaster

N = classes.N_CLASSES


def _check_inputs(truth: np.ndarray, pred: np.ndarray) -> None:
    """Same shape, and integer class codes: a float array would be truncated into classes (3.4 -> 3)."""
    if truth.shape != pred.shape:
        raise AlignmentError(f"truth {truth.shape} and prediction {pred.shape} differ in shape",
                             "compare rasters on the same pixel grid")
    for what, a in (("truth", truth), ("prediction", pred)):
        if np.asarray(a).dtype.kind not in "ui":
            raise InvalidRaster(f"The {what} holds {np.asarray(a).dtype} values; class rasters hold integer class codes",
                                "convert it to uint8 class codes (round float values first if they are not whole)")


def confusion(truth: np.ndarray, pred: np.ndarray, chunk: int = 1 << 19) -> tuple[np.ndarray, int]:
    """19×19 counts (rows truth) and the number of ignored pixels, by one ``np.bincount`` per chunk.

    Each pixel becomes the 16-bit code ``truth << 8 | pred`` and one bincount over 65,536 bins counts
    every (truth, pred) byte pair; the FLAIR-1 block 1..19 × 1..19 is then cut out, and all the
    rest (0, values above 19) is the ignored count. No boolean masking and no per-pixel lookup:
    chunks keep the bincount's intp copy small and in cache.
    """
    _check_inputs(truth, pred)
    t = classes.to_flair1(truth, "flair1").reshape(-1)
    p = classes.to_flair1(pred, "flair1").reshape(-1)
    counts = np.zeros(1 << 16, dtype=np.int64)
    for start in range(0, t.size, chunk):
        code = t[start : start + chunk].astype(np.uint16)
        code <<= 8
        code |= p[start : start + chunk]
        counts += np.bincount(code, minlength=1 << 16)
    cm = counts.reshape(256, 256)[1 : N + 1, 1 : N + 1].copy()
    return cm, int(t.size - cm.sum())


def confusion_torch(truth: np.ndarray, pred: np.ndarray, device: str = "cuda") -> tuple[np.ndarray, int]:
    """Same counts as :func:`confusion` with ``torch.bincount`` on ``device``: pays off on whole scenes on a GPU."""
    import torch

    _check_inputs(truth, pred)
    t = torch.from_numpy(np.ascontiguousarray(classes.to_flair1(truth, "flair1")).reshape(-1)).to(device)
    p = torch.from_numpy(np.ascontiguousarray(classes.to_flair1(pred, "flair1")).reshape(-1)).to(device)
    counts = torch.bincount((t.int() << 8) | p.int(), minlength=1 << 16).cpu().numpy()
    cm = counts.reshape(256, 256)[1 : N + 1, 1 : N + 1].astype(np.int64)
    return cm, int(truth.size - cm.sum())
