"""Live prediction of one map tile: batching tiles into forward passes, caching results, cutting tiles.

Near native resolution a tile reads the aerial pixels under it plus a 128 px context margin, runs the
model on those *native* pixels, and reprojects the result onto the tile (nearest, so classes are never
blended). At coarser zooms the model would have to see resampled pixels, which it was not trained on,
so the tile is cut from a batch prediction of the whole scene (IGN sliding window, cached as a COG).

Live tiles that arrive together (a viewport loading) are predicted as one region that shares its
context margin (:mod:`flair_viz.predict.viewport`), answered tile by tile as their pixels are done.
Scene predictions run one at a time per process, so the server's memory is bounded. Results are cached in memory (LRU) and on
disk, keyed by model checksum, dataset, file stamp and tile. The router is :mod:`flair_viz.predict.tiles`.
"""

from __future__ import annotations

import io
import math
import threading
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from morecantile import tms as default_tms
from rasterio.warp import transform_bounds
from rasterio.windows import Window
from rio_tiler.io import Reader

from flair_viz.core import atomic, config, raster
from flair_viz.core.catalog import Dataset
from flair_viz.core.errors import InvalidInput
from flair_viz.core.lru import LRU
from flair_viz.core.stamps import file_stamp
from flair_viz.predict import cards, inference, models, viewport
from flair_viz.predict.viewport import TILE, uncertainties

_uncertainties = uncertainties  # the name callers used before the viewport module held it

LIVE_MAX_RATIO = 3.0  # tile pixel / raster pixel (ground size): up to this, run the model on native pixels
CONTEXT_PX = inference.MARGIN  # source pixels of context read around a live tile, as in zone detection
ALIGN = viewport.ALIGN


# -- caches -------------------------------------------------------------------------------------
RESULTS = LRU(2048)  # TileResult per (checksum, dataset, file version, tms, z, x, y)


@dataclass(frozen=True)
class TileResult:
    """A prediction on the tile grid: FLAIR-1 classes (0 = no data) and uncertainties coded 1..255 (0 = none)."""

    classes: np.ndarray
    entropy: np.ndarray
    margin: np.ndarray
    live: bool

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez_compressed(buf, classes=self.classes, entropy=self.entropy, margin=self.margin,
                            live=np.array(self.live))
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> TileResult:
        with np.load(io.BytesIO(data)) as z:
            return cls(z["classes"], z["entropy"], z["margin"], bool(z["live"]))


def file_version(path: Path) -> str:
    """``size.mtime_ns`` of the file's stamp: in every cache key, so a replaced file never serves old tiles."""
    stamp = file_stamp(path)
    return f"{stamp['size']}.{stamp['mtime_ns']}"


def _empty() -> TileResult:
    z = np.zeros((TILE, TILE), np.uint8)
    return TileResult(z, z, z, live=False)


# -- geometry -----------------------------------------------------------------------------------
def _tile_geometry(info: raster.RasterInfo, tms_id: str, z: int, x: int, y: int):
    """Tile bounds in its own CRS and in the raster's, and the ground ratio tile pixel / raster pixel."""
    tms = default_tms.get(tms_id)
    b = tms.xy_bounds(x, y, z)
    tile_crs = tms.rasterio_crs
    src_bounds = transform_bounds(tile_crs, info.crs, b.left, b.bottom, b.right, b.top, densify_pts=21)
    ratio = ((src_bounds[2] - src_bounds[0]) / TILE) / info.res[0]
    return tile_crs, (b.left, b.bottom, b.right, b.top), src_bounds, ratio


def _intersects(a: tuple, b: tuple) -> bool:
    return a[0] < b[2] and a[2] > b[0] and a[1] < b[3] and a[3] > b[1]


def live_window(info: raster.RasterInfo, src_bounds: tuple) -> Window:
    """Source pixels under the tile, plus the context margin, grown to a size the U-Net accepts."""
    inv = ~info.transform
    c0, r0 = inv @ (src_bounds[0], src_bounds[3])
    c1, r1 = inv @ (src_bounds[2], src_bounds[1])
    col0, row0 = math.floor(min(c0, c1)) - CONTEXT_PX, math.floor(min(r0, r1)) - CONTEXT_PX
    w = math.ceil(max(c0, c1)) + CONTEXT_PX - col0
    h = math.ceil(max(r0, r1)) + CONTEXT_PX - row0
    w, h = -(-w // ALIGN) * ALIGN, -(-h // ALIGN) * ALIGN
    return Window(col0, row0, w, h)


_scene_locks: dict[tuple[str, str], threading.Lock] = {}
_scene_locks_lock = threading.Lock()
_scene_gate = threading.Lock()  # one scene prediction at a time in a server: its memory is bounded by one


def scene_prediction(loaded: models.LoadedModel, ds: Dataset) -> tuple[Path, Path]:
    """The batch prediction COGs (classes, probabilities) of a scene in the cache, computed once."""
    folder = config.cache_dir() / "predictions" / loaded.results_tag
    stem = f"{ds.id}.{file_version(ds.path)}"
    cls_path, proba_path = folder / f"{stem}.tif", folder / f"{stem}.proba.tif"
    key = (loaded.checksum, str(cls_path))
    with _scene_locks_lock:
        lock = _scene_locks.setdefault(key, threading.Lock())
    with lock:
        if not (cls_path.exists() and proba_path.exists()):
            with _scene_gate:
                if not (cls_path.exists() and proba_path.exists()):
                    inference.predict_file(loaded, ds.path, cls_path, proba_path=proba_path, progress=False,
                                           bands=ds.bands or None)
    return cls_path, proba_path


def _coarse(loaded: models.LoadedModel, ds: Dataset, tms_id: str, z: int, x: int, y: int) -> TileResult:
    """Cut a coarse tile from the scene's batch prediction: the model never sees resampled pixels."""
    cls_path, proba_path = scene_prediction(loaded, ds)
    tms = default_tms.get(tms_id)
    with Reader(str(cls_path), tms=tms) as src:
        img = src.tile(x, y, z, tilesize=TILE, indexes=1, resampling_method="nearest", reproject_method="nearest")
    cls = np.asarray(img.data[0]).astype(np.uint8)
    cls[~(np.asarray(img.mask) > 0)] = 0
    with Reader(str(proba_path), tms=tms) as src:
        pimg = src.tile(x, y, z, tilesize=TILE, resampling_method="nearest", reproject_method="nearest")
    ent, mar = uncertainties(np.asarray(pimg.data).astype(np.uint8), loaded.card.classes, cls > 0)
    return TileResult(cls, ent, mar, live=False)


def _cached(key: tuple, disk: Path) -> TileResult | None:
    hit = RESULTS.get(key)
    if hit is not None or not disk.exists():
        return hit
    try:
        result = TileResult.from_bytes(disk.read_bytes())
    except (OSError, ValueError, KeyError):
        disk.unlink(missing_ok=True)  # a damaged cache entry is recomputed, never served
        return None
    RESULTS.put(key, result)
    return result


Viewport = tuple[int, int, int, int]  # x0, y0, x1, y1: the tile range a map shows (inclusive)
MAX_VIEWPORT = (12, 8)  # columns, rows of an announced viewport predicted ahead, around the asked tile (a 1920 px
# wide screen shows 9 × 6 z18 tiles at most; larger ranges are cut around the asked tile, the rest gathered as usual)

_INFLIGHT: dict[tuple, viewport.TileJob] = {}  # tiles queued or being predicted: later requests wait for these
_inflight_lock = threading.Lock()
_writer = ThreadPoolExecutor(1, thread_name_prefix="flair-viz-tile-writer")  # disk cache writes, off the model


def prediction(ds: Dataset, model_id: str, z: int, x: int, y: int, tms_id: str = "WebMercatorQuad",
               viewport_hint: Viewport | None = None) -> TileResult:
    """The prediction of one tile, from memory, disk, or by running the model (live or batch).

    ``viewport_hint`` is the tile range the map shows (its tile URLs carry it). Why: a browser opens at
    most 6 connections to a server, so a 12-tile viewport would arrive as two bursts of 6 and be
    predicted as two regions, each paying its own margin. With the range, the first request queues the
    whole viewport as one region (tiles not cached nor already queued; at most ``MAX_VIEWPORT``), and
    the requests that follow wait for their tile in it.
    """
    if ds.role != "image":
        raise InvalidInput(f"Dataset {ds.id} is a {ds.role} raster; predictions need an aerial image",
                           "use the catalog ID of an image (role image), e.g. IMG_000473")
    card = cards.get_card(model_id)
    info = raster.check_image_dtype(raster.describe(ds.path), ds.id)  # the CLI's dtype rule (issue 22)
    bands = ds.bands or raster.band_names_for(info.count)
    indexes = inference.band_indexes(card, tuple(bands), ds.id)
    loaded = models.load_model(card)
    version = file_version(ds.path)
    place = _Place(loaded, ds, info, indexes, version, tms_id, z)
    key, disk = place.key(x, y), place.disk(x, y)
    result = _cached(key, disk)
    if result is not None:
        return result
    tile_crs, tile_bounds, src_bounds, ratio = _tile_geometry(info, tms_id, z, x, y)
    if not _intersects(src_bounds, info.bounds):
        result = _empty()
    elif ratio <= LIVE_MAX_RATIO:
        for _ in range(3):  # a tile predicted ahead may be dropped for newer work just as a request joins it
            try:
                result = TileResult(*_live(place, x, y, viewport_hint).result(), live=True)
                break
            except CancelledError:
                continue
        else:
            result = TileResult(*_live(place, x, y, None).result(), live=True)
        if not disk.exists():  # a request's tile is on disk when it returns (tiles predicted ahead: written later)
            atomic.write_bytes(disk, result.to_bytes())
        return result
    else:
        result = _coarse(loaded, ds, tms_id, z, x, y)
    atomic.write_bytes(disk, result.to_bytes())
    RESULTS.put(key, result)
    return result


@dataclass(frozen=True)
class _Place:
    """What the tiles of one model, dataset version and zoom share: their cache keys and jobs."""

    loaded: models.LoadedModel
    ds: Dataset
    info: raster.RasterInfo
    indexes: list[int]
    version: str
    tms_id: str
    z: int

    def key(self, x: int, y: int) -> tuple:
        return (self.loaded.checksum, self.loaded.engine, self.ds.id, self.version, self.tms_id, self.z, x, y)

    def disk(self, x: int, y: int) -> Path:
        return (config.cache_dir() / "predict-tiles" / self.loaded.results_tag / f"{self.ds.id}.{self.version}"
                / self.tms_id / str(self.z) / str(x) / f"{y}.npz")

    def job(self, x: int, y: int, asked: bool) -> viewport.TileJob | None:
        """The live job of a tile, or None where the tile misses the raster or is too coarse to run live."""
        tile_crs, tile_bounds, src_bounds, ratio = _tile_geometry(self.info, self.tms_id, self.z, x, y)
        if not _intersects(src_bounds, self.info.bounds) or ratio > LIVE_MAX_RATIO:
            return None
        group = (self.loaded.key, self.ds.id, self.version, self.tms_id, self.z)
        return viewport.TileJob(self.loaded, self.ds, self.info, self.indexes, group, x, y, tile_crs, tile_bounds,
                                viewport.inner_window(self.info, src_bounds), Future(), asked)


def hints_on() -> bool:
    """Whether ``viewport=`` hints are followed (``FLAIR_VIZ_VIEWPORT_HINT``, default 1).

    Off (0) where requests of one map are shared among processes (``serve --workers N`` turns it off, and
    replicas behind a balancer should): the table of tiles in flight is per process, so every process that
    gets one of the view's requests would predict the whole view."""
    return config.settings().viewport_hint


def _around(x: int, y: int, hint: Viewport | None) -> list[tuple[int, int]]:
    """The hinted range's tiles, at most ``MAX_VIEWPORT`` around (x, y); none unless it holds (x, y)."""
    if hint is None or not hints_on() or not (hint[0] <= x <= hint[2] and hint[1] <= y <= hint[3]):
        return []
    (cols, rows), (x0, y0, x1, y1) = MAX_VIEWPORT, hint
    x0, y0 = max(x0, min(x - cols // 2, x1 - cols + 1)), max(y0, min(y - rows // 2, y1 - rows + 1))
    return [(i, j) for j in range(y0, min(y1, y0 + rows - 1) + 1) for i in range(x0, min(x1, x0 + cols - 1) + 1)
            if (i, j) != (x, y)]


def _live(place: _Place, x: int, y: int, hint: Viewport | None) -> Future:
    """The future of tile (x, y): the one already queued, or a new job queued with the hinted viewport's
    tiles that are neither cached nor queued. Results are cached by each job's callback.

    The jobs (a reprojected footprint each, ~1 ms) are made under the lock on purpose: the other requests
    of a view arrive together and would each make the whole view's jobs again; waiting, they just join.
    Made outside it, a 12-tile view measured 1.22–1.29× instead of 1.46× (benchmarks/viewport.py)."""
    key = place.key(x, y)
    with _inflight_lock:
        queued = _INFLIGHT.get(key)
        if queued is not None:
            queued.asked = True  # a request waits for it now: the region will not drop it
            return queued.done
        hit = RESULTS.get(key)  # finished between the cache check and here
        if hit is not None:
            done: Future = Future()
            done.set_result((hit.classes, hit.entropy, hit.margin))
            return done
        others = [(i, j) for i, j in _around(x, y, hint)
                  if place.key(i, j) not in _INFLIGHT and RESULTS.get(place.key(i, j)) is None
                  and not place.disk(i, j).exists()]
        jobs = [j for j in [place.job(x, y, True)] + [place.job(i, k, False) for i, k in others] if j is not None]
        for job in jobs:
            _INFLIGHT[place.key(job.x, job.y)] = job
            job.done.add_done_callback(partial(_store, place.key(job.x, job.y),
                                               None if job.asked else place.disk(job.x, job.y)))
    viewport.REGIONS.enqueue(jobs)
    return jobs[0].done


def _store(key: tuple, disk: Path | None, fut: Future) -> None:
    """A finished job: in memory first, then out of the in-flight table (so no request misses both);
    a tile predicted ahead (``disk`` given) is also written to the disk cache, off the model's thread."""
    ok = not fut.cancelled() and fut.exception() is None
    with _inflight_lock:
        if ok:
            RESULTS.put(key, TileResult(*fut.result(), live=True))
        _INFLIGHT.pop(key, None)
    if ok and disk is not None:
        _writer.submit(lambda: disk.exists() or atomic.write_bytes(disk, TileResult(*fut.result(), live=True).to_bytes()))
