"""How unsure a model is, per pixel: the one entropy and margin of FLAIR Viz.

The live map (entropy and margin tile layers) and the annotation ranking both call these, so the same
probabilities give the same numbers on the map and in the ranking. Entropy is normalised by
``log(n_classes)``, the number of classes the *model* has: predictions come back as 19 FLAIR-1
channels even for a model with fewer classes, so counting the channels (or the channels non-zero in
one tile) would change the scale from one tile or one scene to the next.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from flair_viz.core.errors import InvalidInput

_XLOGX_U8 = np.zeros(256, dtype=np.float32)
_XLOGX_U8[1:] = np.arange(1, 256) * np.log(np.arange(1, 256))
_TINY = np.float32(1e-30)


@dataclass(frozen=True)
class PixelStats:
    """Per-pixel uncertainty of one strip: all (h, w); entropy and margin are only meaningful where ``valid``."""

    valid: np.ndarray
    entropy: np.ndarray  # normalised by log(n_classes), 0..1
    margin: np.ndarray  # top-1 minus top-2 probability, 0..1 (the gap, not the uncertainty)
    argmax: np.ndarray  # band index of the most likely class


def pixel_stats(proba: np.ndarray, n_classes: int | None = None) -> PixelStats:
    """Entropy, top-2 margin and argmax of (K, h, w) probabilities, float 0..1 or uint8 0..255.

    ``n_classes`` is the model's number of classes (default K, the band count); entropy is divided
    by its log, so 1 means "uniform over the model's classes". Probabilities are renormalised per
    pixel (IGN's uint8 output does not sum to exactly 255), and a pixel whose probabilities are all 0
    is nodata. No K×h×w float copy is made: with x the raw values and S = Σx,
    entropy = log S − Σ x·log x / S and margin = (top1 − top2) / S, computed one class plane at a
    time (a running top-2), with x·log x from a 256-entry table for uint8.
    """
    if proba.ndim != 3 or proba.shape[0] < 2:
        raise InvalidInput(f"Probabilities must be (classes, height, width) with ≥ 2 classes, got shape {proba.shape}",
                           "give one band per class (e.g. the output of `flair-viz predict --proba`)")
    k = proba.shape[0]
    n = k if n_classes is None else int(n_classes)
    if n < 2:
        raise InvalidInput(f"A model needs ≥ 2 classes for an entropy, got n_classes={n_classes}",
                           "give the number of classes in the model card")
    is_u8 = proba.dtype == np.uint8
    if not is_u8 and not np.issubdtype(proba.dtype, np.floating):
        raise InvalidInput(f"Probabilities of type {proba.dtype} are not supported", "give float 0..1 or uint8 0..255")
    plane = None if is_u8 else _float_planes(proba)
    total = np.zeros(proba.shape[1:], np.float32)
    xlogx = np.zeros(proba.shape[1:], np.float32)
    top1 = np.zeros(proba.shape[1:], np.float32)
    top2 = np.zeros(proba.shape[1:], np.float32)
    arg = np.zeros(proba.shape[1:], np.int16)
    buf = np.empty(proba.shape[1:], np.float32)
    better = np.empty(proba.shape[1:], bool)
    for i in range(k):
        if is_u8:
            xlogx += _XLOGX_U8[proba[i]]
            x = proba[i].astype(np.float32)
        else:
            x = plane(i)
            np.maximum(x, _TINY, out=buf)  # x·log x with 0·log 0 = 0: log of a tiny floor times an exact 0
            np.log(buf, out=buf)
            buf *= x
            xlogx += buf
        total += x
        np.minimum(top1, x, out=buf)
        np.maximum(top2, buf, out=top2)
        np.greater(x, top1, out=better)
        np.copyto(arg, i, where=better)
        np.maximum(top1, x, out=top1)
    valid = total > 0
    safe = np.where(valid, total, 1)
    entropy = (np.log(safe) - xlogx / safe) / math.log(n)
    margin = (top1 - top2) / safe
    return PixelStats(valid, np.clip(entropy, 0, 1), margin, arg)


def _float_planes(proba: np.ndarray):
    """``i -> plane i`` as float32 ≥ 0, the whole array checked once (min and max: two passes, not one
    sanitising copy per plane); NaN or infinite values take the per-plane :func:`_float_plane` path."""
    lo, hi = float(np.min(proba)), float(np.max(proba))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return lambda i: _float_plane(proba[i])
    if lo < -1e-6 or hi > 1 + 1e-3:
        raise InvalidInput(f"Probabilities range {lo:.3g}..{hi:.3g}, outside 0..1: these look like "
                           "logits", "apply a softmax over the class axis first, or give uint8 0..255 probabilities")
    if lo < 0:
        return lambda i: np.clip(proba[i].astype(np.float32, copy=False), 0, None)
    return lambda i: proba[i].astype(np.float32, copy=False)


def _float_plane(plane: np.ndarray) -> np.ndarray:
    """One class plane as float32 ≥ 0; logits are refused because their "entropy" would mean nothing."""
    x = np.nan_to_num(plane.astype(np.float32, copy=False), nan=0.0, posinf=0.0, neginf=0.0)
    if x.size and (x.min() < -1e-6 or x.max() > 1 + 1e-3):
        raise InvalidInput(f"Probabilities range {x.min():.3g}..{x.max():.3g}, outside 0..1: these look like "
                           "logits", "apply a softmax over the class axis first, or give uint8 0..255 probabilities")
    return np.clip(x, 0, None)


def entropy(proba: np.ndarray, n_classes: int | None = None) -> np.ndarray:
    """Per-pixel entropy (h, w) float32 in 0..1, 1 = uniform over the model's ``n_classes``; 0 on nodata."""
    stats = pixel_stats(proba, n_classes)
    return np.where(stats.valid, stats.entropy, 0).astype(np.float32)


def margin(proba: np.ndarray) -> np.ndarray:
    """Per-pixel 1 − (top-1 − top-2) (h, w) float32: near 1 where two classes compete, 0 where one wins.

    This is the *uncertainty* form, the one the map draws and the annotation ``margin`` component
    averages; :attr:`PixelStats.margin` holds the raw gap. Nodata pixels get 0.
    """
    stats = pixel_stats(proba)
    return np.where(stats.valid, 1 - stats.margin, 0).astype(np.float32)
