"""The one evaluate engine: reuse what the store holds, count the rest with a runner, merge, save.

Reuse (same input key), the gather loop, periodic flushes and the final merge live here once. A
*runner* only decides where :func:`compute_pair` runs: :func:`serial_runner` in this process (the
first error is raised as is, with its class), or the Dask runner of :mod:`flair_viz.metrics.batch`
(failures are collected and reported together after the finished pairs are saved).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from rasterio.windows import Window

from flair_viz.core import classes, errors, raster
from flair_viz.core.errors import AlignmentError, UnreadableRaster, first_line
from flair_viz.core.jobs import TaskOutcome, raise_failures
from flair_viz.metrics.confusion import N, confusion, confusion_torch
from flair_viz.metrics.pairs import Pair
from flair_viz.metrics.store import KEY_COLUMNS, MetricsTable, check_store_path, input_key

STRIP_ROWS = 2048  # rows read at once: bounds memory on whole-scene rasters, one read for a 512 px patch
Row = tuple[dict, np.ndarray]  # one store row: metadata and its 19×19 matrix
# A runner computes the given pairs and yields (position in the list, outcome whose value is a Row).
Runner = Callable[[Sequence[Pair]], Iterator[tuple[int, TaskOutcome]]]


@dataclass(frozen=True)
class EvaluationRun:
    """The rows for the requested pairs, and how many were computed versus reused from the store."""

    table: MetricsTable
    computed: int
    reused: int


def _bounds_2154(info: raster.RasterInfo) -> tuple[float, float, float, float]:
    if info.crs is None:
        return (float("nan"),) * 4
    if info.crs == raster.LAMBERT93:
        return tuple(float(v) for v in info.bounds)
    from rasterio.warp import transform_bounds

    return tuple(float(v) for v in transform_bounds(info.crs, raster.LAMBERT93, *info.bounds))


def _count(pair: Pair, height: int, width: int, use_torch: bool, pred_at: tuple[int, int] = (0, 0)) -> tuple[np.ndarray, int]:
    """Confusion of one pair on a shared lattice, strip by strip so whole scenes stay small in memory: the truth's
    ``height`` × ``width`` pixels against the prediction's from ``pred_at`` (col, row) on."""
    total, ignored = np.zeros((N, N), np.int64), 0
    count = confusion_torch if use_torch else confusion
    with raster.open_raster(pair.truth) as tds, raster.open_raster(pair.pred) as pds:
        for row in range(0, height, STRIP_ROWS):
            win = Window(0, row, width, min(STRIP_ROWS, height - row))
            try:
                t_raw = tds.read(1, window=win)
                p_raw = pds.read(1, window=Window(pred_at[0], pred_at[1] + row, win.width, win.height))
            except Exception as exc:
                raise UnreadableRaster(f"Cannot read the pixels of {pair.truth.name} or {pair.pred.name}: "
                                       f"{first_line(exc)}",
                                       "the file is probably truncated; re-export it") from None
            cm, ign = count(classes.to_flair1(t_raw, pair.truth_nomenclature, tds.nodata),
                            classes.to_flair1(p_raw, pair.pred_nomenclature, pds.nodata))
            total += cm
            ignored += ign
    return total, ignored


def truth_in_prediction(tinfo: raster.RasterInfo, pinfo: raster.RasterInfo) -> tuple[int, int]:
    """Where the truth lies in the prediction, (col, row) of its top-left pixel: (0, 0) for two rasters of one grid.

    A prediction larger than its truth on the same lattice (a whole stack or département predicted, the truth of
    a few patches or of one area on the same ground) is counted over the truth's pixels only. A truth reaching
    beyond the prediction is refused: its pixels outside would silently go unscored.
    """
    off = raster.grid_offset(pinfo, tinfo)
    if off is None or (tinfo.width, tinfo.height) == (pinfo.width, pinfo.height):
        raster.check_same_grid(tinfo, pinfo)  # another lattice, or the same size elsewhere: the one grid error
        return 0, 0
    c, r = off
    if c < 0 or r < 0 or c + tinfo.width > pinfo.width or r + tinfo.height > pinfo.height:
        raise AlignmentError(f"{tinfo.path.name} ({tinfo.width}x{tinfo.height}, {_box(tinfo.bounds)}) reaches beyond "
                             f"the prediction {pinfo.path.name} ({_box(pinfo.bounds)}): its pixels outside would go "
                             "unscored", "predict the whole area of the ground truth, or crop the ground truth to "
                             "the prediction (gdal_translate -projwin)")
    return c, r


def _box(b: tuple[float, ...]) -> str:
    return f"x {b[0]:.1f}..{b[2]:.1f}, y {b[1]:.1f}..{b[3]:.1f}"


def compute_pair(pair: Pair, use_torch: bool = False) -> Row:
    """Check one pair's grids and count its confusion over the truth's pixels; errors name the patch."""
    with errors.context(f"Patch {pair.patch}"):
        tinfo = raster.check_mask(pair.truth, pair.truth_nomenclature, scan_values=False)
        pinfo = raster.check_mask(pair.pred, pair.pred_nomenclature, scan_values=False)
        pred_at = truth_in_prediction(tinfo, pinfo)
        total, ignored = _count(pair, tinfo.height, tinfo.width, use_torch, pred_at)
    minx, miny, maxx, maxy = _bounds_2154(tinfo)
    row_meta = {"patch": pair.patch, "domain": pair.domain, "zone": pair.zone, "date": pair.date,
                "minx": minx, "miny": miny, "maxx": maxx, "maxy": maxy, "model": pair.model,
                "truth_id": pair.truth_id, "pred_id": pair.pred_id, **input_key(pair), "ignored": int(ignored)}
    return row_meta, total


def serial_runner(use_torch: bool = False, progress: bool = False) -> Runner:
    """Count in this process, one pair after the other; the first error stops the run."""
    def run(todo: Sequence[Pair]) -> Iterator[tuple[int, TaskOutcome]]:
        it: Sequence[Pair] = todo
        if progress:
            from tqdm import tqdm

            it = tqdm(todo, desc="evaluating", unit="patch", file=sys.stderr)
        for j, pair in enumerate(it):
            yield j, TaskOutcome(pair.patch, True, compute_pair(pair, use_torch=use_torch))

    return run


def _reuse(pairs: Sequence[Pair], stored: MetricsTable) -> tuple[dict[int, Row], list[tuple[int, Pair]]]:
    """Rows the store already holds for these exact inputs (by position), and the pairs left to count."""
    keys = list(KEY_COLUMNS)
    index = {tuple(r): i for i, r in enumerate(stored.meta[keys].itertuples(index=False, name=None))}
    rows: dict[int, Row] = {}
    todo: list[tuple[int, Pair]] = []
    for i, pair in enumerate(pairs):
        j = index.get(tuple(input_key(pair)[c] for c in keys))
        if j is None:
            todo.append((i, pair))
            continue
        # the same files may be registered under other IDs or model names since they were counted
        meta = stored.meta.iloc[j].to_dict() | {"model": pair.model, "truth_id": pair.truth_id,
                                               "pred_id": pair.pred_id}
        rows[i] = (meta, stored.matrices[j])
    return rows, todo


def run_evaluation(pairs: Sequence[Pair], store: str | os.PathLike[str] | None, runner: Runner,
                   flush_every_s: float | None = None) -> EvaluationRun:
    """Count the pairs not yet in ``store`` (same input key) with ``runner``, save the store, return the pairs' rows.

    Rows of other pairs already in the store are kept, so one store can gather several runs. The
    store is rewritten atomically (every ``flush_every_s`` seconds if given, and at the end), so an
    interrupted run leaves the previous file, or the last flush, intact. Failed pairs reported by
    the runner are raised together once the others are saved.
    """
    if store:
        check_store_path(store)
    stored = MetricsTable.read(store) if store else MetricsTable.empty()
    rows, todo = _reuse(pairs, stored)
    reused = len(rows)
    failed: list[TaskOutcome] = []
    last_flush = time.monotonic()
    for j, outcome in runner([p for _, p in todo]):
        if outcome.ok:
            rows[todo[j][0]] = outcome.value
        else:
            failed.append(outcome)
        if store and flush_every_s is not None and time.monotonic() - last_flush > flush_every_s:
            stored.merged_with(MetricsTable.from_rows([rows[i] for i in sorted(rows)])).write(store)
            last_flush = time.monotonic()
    result = MetricsTable.from_rows([rows[i] for i in sorted(rows)])
    if store:
        merged = stored.merged_with(result)
        if len(result) - reused or len(merged) != len(stored):
            merged.write(store)
    raise_failures(failed, len(pairs), "pair(s)")
    return EvaluationRun(result, computed=len(result) - reused, reused=reused)


def evaluate(pairs: Sequence[Pair], store: str | os.PathLike[str] | None = None, progress: bool = False,
             use_torch: bool = False) -> EvaluationRun:
    """Evaluate in this process (see :func:`run_evaluation`); the first failing pair raises its error."""
    return run_evaluation(pairs, store, serial_runner(use_torch=use_torch, progress=progress))
