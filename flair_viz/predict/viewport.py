"""A viewport's live tiles as one region: tiles requested together share their context margin.

A live tile alone reads its native pixels plus a 128 px margin on every side, so a z18 tile of about
550 px runs the model on about 830² px, more than twice its own area. Tiles that arrive together (a map
viewport loading) are gathered for a few milliseconds, grouped by model, dataset and zoom, split into
groups of touching tiles, and each group is predicted as one region: the union of its tiles' pixels
plus one margin around the whole, cut into a few large chunks (each with its own margin, because
memory is bounded per forward pass: ``FLAIR_VIZ_REGION_MPX`` input megapixels, default 3). No tile pays its margin twice, and tiles are answered as soon
as the chunks under them are done, so the first rows of a viewport appear before the last ones.

One worker thread runs one region at a time: memory is bounded by one chunk's forward pass plus the
region's class and uncertainty codes (3 bytes per pixel), never by the number of tiles asked for.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np
from rasterio.enums import Resampling
from rasterio.transform import from_bounds
from rasterio.warp import reproject
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from flair_viz.core import config, raster, uncertainty
from flair_viz.core.catalog import Dataset
from flair_viz.core.classtile import TILE_SIZE as TILE
from flair_viz.predict import inference, models

# Chunk sides are rounded up to this (a multiple of geometry.ALIGN; the extra pixels are real context, read, not padding):
# OpenVINO plans each new input shape once, which costs seconds for a big chunk, so few distinct shapes
# let later viewports reuse the plans of earlier ones. 64 px costs ~2-4 % more pixels per side.
SHAPE_STEP = 64
CONTEXT_PX = inference.MARGIN


@dataclass
class TileJob:
    """One live tile to predict: where it is and what it needs; ``done`` receives its codes (cls, ent, mar)."""

    loaded: models.LoadedModel
    ds: Dataset
    info: raster.RasterInfo
    indexes: list[int]
    group: tuple  # (model key, dataset id, file version, tms, z): tiles that can share a region
    x: int
    y: int
    tile_crs: object
    tile_bounds: tuple
    inner: tuple[int, int, int, int]  # (row0, col0, row1, col1) native pixels under the tile, no margin
    done: Future
    asked: bool = True  # a request waits for it (False: a tile of an announced viewport, predicted ahead)


def inner_window(info: raster.RasterInfo, src_bounds: tuple) -> tuple[int, int, int, int]:
    """Native pixels under a tile (row0, col0, row1, col1), outward-rounded, before any context."""
    inv = ~info.transform
    c0, r0 = inv @ (src_bounds[0], src_bounds[3])
    c1, r1 = inv @ (src_bounds[2], src_bounds[1])
    return (math.floor(min(r0, r1)), math.floor(min(c0, c1)), math.ceil(max(r0, r1)), math.ceil(max(c0, c1)))


def components(jobs: list[TileJob]) -> list[list[TileJob]]:
    """Groups of tiles that touch (8-neighbourhood), so a region never spans empty tiles between two areas."""
    left = {(j.x, j.y): j for j in jobs}
    out = []
    while left:
        seed = next(iter(left))
        stack, comp = [seed], []
        while stack:
            k = stack.pop()
            if k not in left:
                continue
            comp.append(left.pop(k))
            stack += [(k[0] + dx, k[1] + dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1) if (dx or dy)]
        out.append(comp)
    return out


def _pieces(start: int, stop: int, n: int) -> list[tuple[int, int]]:
    """[start, stop) cut into ``n`` near-equal pieces."""
    edges = [start + round(i * (stop - start) / n) for i in range(n + 1)]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def region_mpx() -> float:
    """Input megapixels one forward pass may take (``FLAIR_VIZ_REGION_MPX``, default 3): the memory bound.

    3 rather than more: a 12-tile z18 viewport is then two 2.9 Mpx chunks, 0.9 GB of OpenVINO buffers for the
    full U-Net ResNet34 in bf16; one 5.2 Mpx chunk would save 10 % of the pixels but take 1.5 GB, and a 20-tile
    view in Chromium loaded at most 7 % sooner with it, at a 0.55 GB higher server peak (docs/benchmarks.md)."""
    return config.settings().region_mpx


def _padded(n: int) -> int:
    return -(-(n + 2 * CONTEXT_PX) // SHAPE_STEP) * SHAPE_STEP


def chunk_grid(height: int, width: int, mpx: float | None = None) -> tuple[int, int]:
    """(rows, cols) of chunks for a region: fewest input pixels in all, each chunk under the budget."""
    budget = (region_mpx() if mpx is None else mpx) * 1e6
    best: tuple[float, int, int] | None = None
    for nr in range(1, 33):
        for nc in range(1, 33):
            h, w = _padded(-(-height // nr)), _padded(-(-width // nc))
            if h * w <= budget or (nr, nc) == (32, 32):
                total = nr * nc * h * w
                if best is None or total < best[0]:
                    best = (total, nr, nc)
    assert best is not None
    return best[1], best[2]


def predict_region(jobs: list[TileJob], forward: inference.Forward, stale: Callable[[], bool] = lambda: False) -> None:
    """Predict one group of touching tiles as a region, resolving each tile's future when its chunks are done.

    Once every tile a request waits for is answered, the rest of an announced viewport is dropped (its
    futures cancelled) if ``stale()`` says newer tiles are queued: a user who pans on does not wait for
    the view they left."""
    first = jobs[0]
    loaded, ds, info, indexes = first.loaded, first.ds, first.info, first.indexes
    r0, c0 = min(j.inner[0] for j in jobs), min(j.inner[1] for j in jobs)
    r1, c1 = max(j.inner[2] for j in jobs), max(j.inner[3] for j in jobs)
    cls = np.zeros((r1 - r0, c1 - c0), np.uint8)
    ent, mar = np.zeros_like(cls), np.zeros_like(cls)
    nr, nc = chunk_grid(r1 - r0, c1 - c0)
    chunks = [(a, b, c, d) for a, b in _pieces(r0, r1, nr) for c, d in _pieces(c0, c1, nc)]
    if not all(j.asked for j in jobs):  # an announced viewport: the chunks under the tiles asked for run first
        chunks.sort(key=lambda ch: _distance(ch, [j.inner for j in jobs if j.asked] or [first.inner]))
    pending = list(jobs)
    done_chunks: list[tuple[int, int, int, int]] = []
    m = CONTEXT_PX
    for a, b, c, d in chunks:
        if not any(j.asked for j in pending) and stale():
            for j in pending:
                j.done.cancel()
            return
        h, w = _padded(b - a), _padded(d - c)
        data, valid = raster.read_window(ds.path, indexes, Window(c - m, a - m, w, h), info.nodata)
        stats = forward.stats(inference.normalise(loaded.card, data)[None])[0]
        keep = np.s_[m:m + b - a, m:m + d - c]
        sl = np.s_[a - r0:b - r0, c - c0:d - c0]
        cls[sl], ent[sl], mar[sl] = codes(stats, valid[keep], keep)
        del stats, data
        done_chunks.append((a, b, c, d))
        ready = [j for j in pending if _covered(j.inner, done_chunks)]
        for j in ready:
            pending.remove(j)
            _resolve(j, (cls, ent, mar), (r0, c0))
    for j in pending:  # cannot happen (the chunks cover the union), but never leave a request waiting
        _resolve(j, (cls, ent, mar), (r0, c0))


def _distance(chunk: tuple[int, int, int, int], inners: list[tuple[int, int, int, int]]) -> float:
    """From a chunk's centre to the nearest tile a request waits for: those chunks run first."""
    cr, cc = (chunk[0] + chunk[1]) / 2, (chunk[2] + chunk[3]) / 2
    return min(math.hypot(cr - (i[0] + i[2]) / 2, cc - (i[1] + i[3]) / 2) for i in inners)


def _covered(inner: tuple, chunks: list[tuple[int, int, int, int]]) -> bool:
    """Whether the done chunks cover a tile's pixels (chunks tile the region, so area decides)."""
    area = 0
    for a, b, c, d in chunks:
        area += max(0, min(b, inner[2]) - max(a, inner[0])) * max(0, min(d, inner[3]) - max(c, inner[1]))
    return area >= (inner[2] - inner[0]) * (inner[3] - inner[1])


def _resolve(job: TileJob, codes: tuple[np.ndarray, ...], origin: tuple[int, int]) -> None:
    r0, c0, r1, c1 = job.inner
    sl = np.s_[r0 - origin[0]:r1 - origin[0], c0 - origin[1]:c1 - origin[1]]
    src_transform = window_transform(Window(c0, r0, c1 - c0, r1 - r0), job.info.transform)
    dst_transform = from_bounds(*job.tile_bounds, TILE, TILE)
    if not job.done.done():  # the three code rasters in one reprojection: one GDAL transformer, not three
        warped = warp(np.stack([a[sl] for a in codes]), src_transform, job.info.crs, dst_transform, job.tile_crs)
        job.done.set_result(tuple(warped))


# -- coding (shared with the coarse path in live.py) ---------------------------------------------
def code(u: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Uncertainty 0..1 as uint8 1..255 with 0 kept for "no data", so nearest resampling stays exact."""
    out = (1 + np.rint(np.clip(u, 0, 1) * 254)).astype(np.uint8)
    out[~valid] = 0
    return out


def codes(stats: uncertainty.PixelStats, valid: np.ndarray, keep=np.s_[:, :]) -> tuple[np.ndarray, ...]:
    """(classes, entropy, margin) codes of the ``keep`` part of a window's pixel stats: the classes are
    the stats' argmax (FLAIR-1 band index + 1; the first of equal maxima, as ``np.argmax``)."""
    cls = (stats.argmax[keep] + 1).astype(np.uint8)
    cls[~valid] = 0
    return cls, code(stats.entropy[keep], valid), code(1 - stats.margin[keep], valid)


def uncertainties(proba: np.ndarray, n_classes: int, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Entropy and margin codes from the one uncertainty module, normalised by the model's class count,
    so the map shows what the annotation ranking scores."""
    stats = uncertainty.pixel_stats(proba, n_classes)
    return code(stats.entropy, valid), code(1 - stats.margin, valid)


def warp(src: np.ndarray, src_transform, src_crs, dst_transform, dst_crs) -> np.ndarray:
    """A code raster (rows, cols), or a stack of them (n, rows, cols), onto the tile grid, nearest: classes
    are never blended."""
    out = np.zeros((*src.shape[:-2], TILE, TILE), np.uint8)
    reproject(src, out, src_transform=src_transform, src_crs=src_crs, src_nodata=0, dst_transform=dst_transform,
              dst_crs=dst_crs, dst_nodata=0, resampling=Resampling.nearest)
    return out


class RegionBatcher:
    """One worker thread: gathers tile jobs for ``max_wait_s``, then predicts each group of touching tiles.

    ``regions`` holds the tile count of the last ``keep`` regions run, oldest first (for tests and
    benchmarks): a server runs regions for as long as it lives, so older counts are dropped.
    """

    def __init__(self, max_wait_s: float = 0.03, max_tiles: int = 64, keep: int = 256) -> None:
        self.max_wait_s = max_wait_s
        self.max_tiles = max_tiles
        self.keep = keep
        self.regions: list[int] = []
        self._q: queue.Queue = queue.Queue()
        self._forwards: dict[tuple, inference.Forward] = {}
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def enqueue(self, jobs: list[TileJob]) -> None:
        """Queue tiles without waiting; each job's ``done`` future is resolved when its chunks are done.

        Several jobs at once are a viewport the map announced (:mod:`flair_viz.predict.live`): they are
        predicted as they are, without waiting for more requests to arrive."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="flair-viz-region-batcher", daemon=True)
                self._thread.start()
        self._q.put(list(jobs))

    def _gather(self) -> list[TileJob]:
        """The first jobs, then every job that follows within ``max_wait_s`` of the previous one (a burst of
        tile requests, however long it takes to arrive), for at most ``10 × max_wait_s`` in all. An
        announced viewport (several jobs in one item) needs no wait: only what is queued already joins it."""
        jobs = list(self._q.get())
        start = time.monotonic()
        wait = self.max_wait_s if len(jobs) == 1 else 0.0
        while len(jobs) < self.max_tiles:
            left = min(wait, start + 10 * wait - time.monotonic())
            try:
                jobs += self._q.get(timeout=left) if left > 0 else self._q.get_nowait()
            except queue.Empty:
                break
        return jobs

    def _run(self) -> None:
        while True:
            jobs = self._gather()
            groups: dict[tuple, list[TileJob]] = {}
            for j in jobs:
                groups.setdefault(j.group, []).append(j)
            for group in groups.values():
                for comp in components(group):
                    try:
                        loaded = comp[0].loaded
                        fwd = self._forwards.get(loaded.key)
                        if fwd is None or fwd.loaded is not loaded:  # a new or reloaded model: forget the old
                            self._forwards = {k: f for k, f in self._forwards.items() if k[:2] != loaded.key[:2]}
                            fwd = self._forwards[loaded.key] = inference.Forward(loaded, 1)
                        predict_region(comp, fwd, stale=lambda: not self._q.empty())
                        self.regions.append(len(comp))
                        del self.regions[:max(0, len(self.regions) - self.keep)]  # only this thread writes it
                    except BaseException as exc:  # noqa: BLE001 - hand every error to the waiting requests
                        for j in comp:
                            if not j.done.done():
                                j.done.set_exception(exc)


# a burst of tile requests (a viewport) arrives over tens of ms on a busy CPU: 100 ms gaps, 1 s at most
REGIONS = RegionBatcher(max_wait_s=config.settings().region_wait_ms / 1000)
