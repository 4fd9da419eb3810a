"""What colour each footprint gets: by domain, by date, or by a per-patch score from the metrics store.

Scores are read from stored confusion matrices (``metrics.store``), one row per patch and model, and put
in a protocol's classes by ``metrics.scores.view``; nothing is recounted from rasters. Scores in 0..1
(mIoU, overall accuracy, the IoU of one class) fall in ten bins of 0.1; the count of one confusion
(truth class → predicted class, in pixels) in decades. Discrete bins make the legend exact: a colour
on the map means one stated range, which a reader (and a test) can check.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from flair_viz.core.classes import protocol_names
from flair_viz.core.errors import InvalidInput
from flair_viz.metrics.scores import iou_miou_oa, protocol_members, view
from flair_viz.metrics.store import MetricsTable
from flair_viz.overview.footprints import Footprints

COLOR_BY = ("domain", "date", "miou", "oa", "iou", "confusion")
SCORES = ("miou", "oa", "iou", "confusion")
ALPHA = 230
NO_SCORE = (150, 150, 150, 120)  # a patch the store has no score for (not evaluated with this model)
SCORE_COLOURS = ("#a50026", "#d73027", "#f46d43", "#fdae61", "#fee08b",  # RdYlGn, 10 bins of 0.1: red = bad
                 "#d9ef8b", "#a6d96a", "#66bd63", "#1a9850", "#006837")
CONFUSION_EDGES = (0, 1, 10, 100, 1_000, 10_000, 100_000)  # bin i: EDGES[i] <= pixels < EDGES[i + 1]
CONFUSION_COLOURS = ("#ffffb2", "#fed976", "#feb24c", "#fd8d3c", "#fc4e2a", "#e31a1c", "#b10026")  # YlOrRd
DOMAIN_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22",
                  "#17becf", "#393b79", "#637939", "#843c39")
DATE_COLOURS = ("#440154", "#46327e", "#365c8d", "#277f8e", "#1fa187", "#4ac16d", "#a0da39", "#fde725")  # viridis


@dataclass(frozen=True)
class Legend:
    title: str
    entries: list[tuple[str, str]]  # (label, "#rrggbb")
    note: str = ""


@dataclass(frozen=True)
class Colouring:
    """RGBA per footprint (``(n, 4)`` uint8, in the footprints' order) and the legend that explains it."""

    rgba: np.ndarray
    legend: Legend
    values: np.ndarray = field(default_factory=lambda: np.zeros(0))  # the per-patch score (NaN: none), if any


def rgb(hex_colour: str) -> tuple[int, int, int]:
    h = hex_colour.lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


def _palette(hexes: tuple[str, ...] | list[str]) -> np.ndarray:
    return np.array([(*rgb(h), ALPHA) for h in hexes], dtype=np.uint8).reshape(-1, 4)


def score_bin(values: np.ndarray) -> np.ndarray:
    """Bin 0..9 of scores in 0..1 (1.0 falls in the top bin); -1 where the score is NaN."""
    v = np.asarray(values, dtype=np.float64)
    out = np.full(v.shape, -1, dtype=np.int64)
    ok = np.isfinite(v)
    out[ok] = np.clip(np.floor(v[ok] * 10), 0, 9).astype(np.int64)
    return out


def confusion_bin(counts: np.ndarray) -> np.ndarray:
    """Bin of pixel counts by the decades of :data:`CONFUSION_EDGES`; -1 where NaN."""
    v = np.asarray(counts, dtype=np.float64)
    out = np.full(v.shape, -1, dtype=np.int64)
    ok = np.isfinite(v)
    out[ok] = np.searchsorted(np.array(CONFUSION_EDGES, dtype=np.float64), v[ok], side="right") - 1
    return out


def _check_class(name: str, value: int | None, k: int, protocol: str) -> int:
    if value is None or not 1 <= int(value) <= k:
        raise InvalidInput(f"{name}={value} is not a class of the {protocol} view (1..{k})",
                           "give a FLAIR-1 value 1..19 (protocol=full) or 1..13 (protocol=flair1, 13 = other)")
    return int(value)


def patch_values(fp: Footprints, table: MetricsTable, model: str, metric: str, protocol: str = "flair1",
                 cls: int | None = None, truth_class: int | None = None, pred_class: int | None = None) -> np.ndarray:
    """The per-patch score of each footprint for ``model`` (NaN: the store has no row, or the score is undefined).

    The store's first row of a patch and model is used. mIoU is the NaN-mean of the protocol's mIoU classes,
    with :func:`flair_viz.metrics.scores.iou_miou_oa`, the formula of the Metrics page, for all patches at once.
    """
    if metric not in SCORES:
        raise InvalidInput(f"Unknown score {metric!r}", f"use one of {', '.join(SCORES)}")
    k = len(protocol_members(protocol))
    if metric == "iou":
        cls = _check_class("cls", cls, k, protocol)
    if metric == "confusion":
        truth_class = _check_class("truth_class", truth_class, k, protocol)
        pred_class = _check_class("pred_class", pred_class, k, protocol)
    out = np.full(len(fp), np.nan)
    if not len(table) or not len(fp):
        return out
    meta = table.meta.reset_index(drop=True)
    mine = meta[meta["model"] == model]
    first = mine[~mine["patch"].duplicated()]
    at = pd.Index(first["patch"]).get_indexer(fp.table["patch"])
    fp_rows = np.where(at >= 0, first.index.to_numpy()[np.maximum(at, 0)] if len(first) else -1, -1)
    hit = fp_rows >= 0
    if not hit.any():
        return out
    cm = view(table.matrices[fp_rows[hit]].astype(np.float64), protocol)  # float: matmul of a stack uses BLAS
    if metric == "confusion":
        out[hit] = cm[:, truth_class - 1, pred_class - 1]
        return out
    iou, miou, oa = iou_miou_oa(cm, protocol)
    out[hit] = iou[:, cls - 1] if metric == "iou" else oa if metric == "oa" else miou
    return out


def _categorical(labels: np.ndarray, ordered: list[str], colours: list[str], title: str) -> Colouring:
    """Label ``ordered[i]`` gets ``colours[i]``; a footprint without a label is grey ("no domain given": a
    BD ORTHO stack's dalles, or an image whose entry names none)."""
    index = {v: i for i, v in enumerate(ordered)}
    pal = _palette(colours)
    idx = np.array([index.get(v, -1) for v in labels], dtype=np.int64)
    rgba = np.tile(np.array(NO_SCORE, np.uint8), (len(labels), 1))
    rgba[idx >= 0] = pal[idx[idx >= 0]]
    entries = list(zip(ordered, colours))
    if (idx < 0).any():
        entries.append((f"no {title.lower()} given", "#969696"))
    return Colouring(rgba, Legend(title, entries))


def _date_colours(n: int) -> list[str]:
    return [DATE_COLOURS[round(i * (len(DATE_COLOURS) - 1) / max(1, n - 1))] for i in range(n)]


def colouring(fp: Footprints, color_by: str, table: MetricsTable | None = None, model: str | None = None,
              protocol: str = "flair1", cls: int | None = None, truth_class: int | None = None,
              pred_class: int | None = None) -> Colouring:
    """Colours and legend of every footprint for one choice of ``color_by`` (see :data:`COLOR_BY`)."""
    if color_by not in COLOR_BY:
        raise InvalidInput(f"Unknown colouring {color_by!r}", f"use color_by= one of {', '.join(COLOR_BY)}")
    if color_by == "domain":
        labels = np.array([str(v) if v else "" for v in fp.table["domain"].to_numpy(dtype=object)], dtype=object)
        ordered = sorted({v for v in labels if v})
        return _categorical(labels, ordered, [DOMAIN_COLOURS[i % len(DOMAIN_COLOURS)] for i in range(len(ordered))],
                            "Domain")
    if color_by == "date":
        years = np.array([str(v)[:4] if v else "" for v in fp.table["vintage"].to_numpy(dtype=object)], dtype=object)
        ordered = sorted({y for y in years if y})
        return _categorical(years, ordered, _date_colours(len(ordered)), "Year")
    if not model:
        raise InvalidInput(f"Colouring by {color_by} needs a model", "pass model= the model ID of stored predictions")
    values = patch_values(fp, table if table is not None else MetricsTable.empty(), model, color_by, protocol, cls,
                          truth_class, pred_class)
    if color_by == "confusion":
        bins, hexes = confusion_bin(values), CONFUSION_COLOURS
        labels = [f"{lo:,}–{hi - 1:,} px" if hi - lo > 1 else f"{lo:,} px"
                  for lo, hi in zip(CONFUSION_EDGES, CONFUSION_EDGES[1:])] + [f"≥ {CONFUSION_EDGES[-1]:,} px"]
        names = protocol_names(protocol)
        title = (f"Pixels of truth {names[truth_class - 1]} predicted {names[pred_class - 1]} · {model}")
    else:
        bins, hexes = score_bin(values), SCORE_COLOURS
        labels = [f"{i / 10:.1f}–{(i + 1) / 10:.1f}" for i in range(10)]
        what = {"miou": "mIoU", "oa": "Overall accuracy",
                "iou": f"IoU of {protocol_names(protocol)[cls - 1]}" if cls else "IoU"}[color_by]
        title = f"{what} per patch · {model} ({protocol} protocol)"
    pal = _palette(hexes)
    rgba = np.tile(np.array(NO_SCORE, np.uint8), (len(values), 1))
    rgba[bins >= 0] = pal[bins[bins >= 0]]
    entries = list(zip(labels, hexes)) + [("no score (not evaluated, or class absent)", "#969696")]
    return Colouring(rgba, Legend(title, entries, "Scores come from the metrics store (flair-viz evaluate)."), values)
