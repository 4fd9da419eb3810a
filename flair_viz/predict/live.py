"""Live prediction of one map tile: batching tiles into forward passes, caching results, cutting tiles.

Near native resolution a tile reads the aerial pixels under it plus a 128 px context margin, runs the
model on those *native* pixels, and reprojects the result onto the tile (nearest, so classes are never
blended). At coarser zooms the model would have to see resampled pixels, which it was not trained on,
so the tile is cut from a prediction of the whole scene on its native pixels, computed once and kept on
disk (:mod:`flair_viz.predict.scene`); once a scene's prediction is there, its near-native tiles are cut
from it too, with no model run.

Live tiles that arrive together (a viewport loading) are predicted as one region that shares its
context margin (:mod:`flair_viz.predict.viewport`), answered tile by tile as their pixels are done.
Scene predictions run one at a time per process, so the server's memory is bounded. Results are cached in memory (LRU) and on
disk, keyed by model checksum, dataset, file stamp and tile. The router is :mod:`flair_viz.predict.tiles`.
"""

from __future__ import annotations

import io
import sys
import threading
import time
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np
from morecantile import tms as default_tms
from rasterio.warp import transform, transform_bounds

from flair_viz.core import atomic, config, raster
from flair_viz.core.catalog import Dataset
from flair_viz.core.errors import FlairVizError, InvalidInput
from flair_viz.core.lru import LRU
from flair_viz.core.stamps import file_stamp
from flair_viz.predict import cards, inference, models, scene, viewport
from flair_viz.predict.cards import ModelCard
from flair_viz.predict.viewport import TILE

LIVE_MAX_RATIO = 3.0  # tile pixel / raster pixel (ground size): up to this, run the model on native pixels


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
class TileGeometry(NamedTuple):
    """Where one tile lies, in its own CRS and in the raster's, and how coarse it is for the raster."""

    tile_crs: object
    tile_bounds: tuple[float, float, float, float]
    src_bounds: tuple[float, float, float, float]  # in the raster's CRS
    ratio: float  # ground size of a tile pixel / of a raster pixel

    def live(self, info: raster.RasterInfo) -> bool:
        """Whether the model runs on the raster's native pixels for this tile: it touches the raster and is
        fine enough (at most ``LIVE_MAX_RATIO``); other tiles are empty or cut from a scene prediction."""
        return _intersects(self.src_bounds, info.bounds) and self.ratio <= LIVE_MAX_RATIO


def live_zoom(info: raster.RasterInfo, tms_id: str) -> int:
    """The coarsest zoom at which the image's tiles are predicted live from the pixels under them (tile
    pixels at most ``LIVE_MAX_RATIO`` raster pixels, at its centre): where an image too large to predict
    whole (:func:`flair_viz.predict.scene.check_size`) starts showing predictions."""
    tms = default_tms.get(tms_id)
    lon, lat = transform(info.crs, "EPSG:4326", [(info.bounds[0] + info.bounds[2]) / 2],
                         [(info.bounds[1] + info.bounds[3]) / 2])
    for z in range(tms.minzoom, tms.maxzoom + 1):
        t = tms.tile(lon[0], lat[0], z)
        if _tile_geometry(info, tms_id, z, t.x, t.y).ratio <= LIVE_MAX_RATIO:
            return z
    return tms.maxzoom


def _tile_geometry(info: raster.RasterInfo, tms_id: str, z: int, x: int, y: int) -> TileGeometry:
    tms = default_tms.get(tms_id)
    b = tms.xy_bounds(x, y, z)
    tile_crs = tms.rasterio_crs
    src_bounds = transform_bounds(tile_crs, info.crs, b.left, b.bottom, b.right, b.top, densify_pts=21)
    ratio = ((src_bounds[2] - src_bounds[0]) / TILE) / info.res[0]
    return TileGeometry(tile_crs, (b.left, b.bottom, b.right, b.top), src_bounds, ratio)


def _intersects(a: tuple, b: tuple) -> bool:
    return a[0] < b[2] and a[2] > b[0] and a[1] < b[3] and a[3] > b[1]


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


@dataclass(frozen=True)
class Place:
    """A tile request resolved once, before any file is opened: the loaded model, the dataset at its
    file version, the tile grid and zoom. All tiles of a view share it; it names their cache entries."""

    loaded: models.LoadedModel
    ds: Dataset
    version: str  # file_version(ds.path): in every key, so a replaced file never serves old tiles
    tms_id: str
    z: int

    def key(self, x: int, y: int) -> tuple:
        return (self.loaded.checksum, self.loaded.engine, self.ds.id, self.version, self.tms_id, self.z, x, y)

    def disk(self, x: int, y: int) -> Path:
        return (config.cache_dir() / "predict-tiles" / self.loaded.results_tag / f"{self.ds.id}.{self.version}"
                / self.tms_id / str(self.z) / str(x) / f"{y}.npz")


def resolve(ds: Dataset, model: str | ModelCard, z: int, tms_id: str = "WebMercatorQuad") -> Place:
    """What every tile request needs, looked up once: an image dataset, the model (loaded once per
    process, then a dictionary lookup) and the file's version. The version is a ``stat``, not an open,
    so a tile found in a cache opens no file at all."""
    if ds.role != "image":
        raise InvalidInput(f"Dataset {ds.id} is a {ds.role} raster; predictions need an aerial image",
                           "use the catalog ID of an image (role image), e.g. IMG_000473")
    loaded = models.load_model(cards.get_card(model) if isinstance(model, str) else model)
    try:
        version = file_version(ds.path)
    except FileNotFoundError:
        raster.describe(ds.path)  # raises the error that names the missing file and the fix
        raise
    return Place(loaded, ds, version, tms_id, z)


def prediction(ds: Dataset, model_id: str, z: int, x: int, y: int, tms_id: str = "WebMercatorQuad",
               viewport_hint: Viewport | None = None) -> TileResult:
    """The prediction of one tile (see :func:`tile_result`), for callers that hold a model ID."""
    return tile_result(resolve(ds, model_id, z, tms_id), x, y, viewport_hint)


def tile_result(place: Place, x: int, y: int, viewport_hint: Viewport | None = None) -> TileResult:
    """The prediction of one tile, from memory, disk, or by running the model (live or batch).

    ``viewport_hint`` is the tile range the map shows (its tile URLs carry it). Why: a browser opens at
    most 6 connections to a server, so a 12-tile viewport would arrive as two bursts of 6 and be
    predicted as two regions, each paying its own margin. With the range, the first request queues the
    whole viewport as one region (tiles not cached nor already queued; at most ``MAX_VIEWPORT``), and
    the requests that follow wait for their tile in it.
    """
    key, disk = place.key(x, y), place.disk(x, y)
    result = _cached(key, disk)
    if result is not None:
        return result
    source = _Source.read(place)  # a cache miss: now the raster's header is read, once
    geometry = _tile_geometry(source.info, place.tms_id, place.z, x, y)
    if not _intersects(geometry.src_bounds, source.info.bounds):
        result = _empty()
        atomic.write_bytes(disk, result.to_bytes())
    elif not geometry.live(source.info):  # coarse: cut from the scene's prediction, computed once
        scene.check_size(place.ds, source.info, live_zoom(source.info, place.tms_id))  # before any lock or work
        codes = scene.scene_codes(place.loaded, place.ds, place.version)
        result = TileResult(*scene.coarse_tile(codes, default_tms.get(place.tms_id), place.z, x, y), live=False)
    elif (codes := scene.ready(place.loaded, place.ds, place.version)) is not None:  # predicted whole already
        inner = viewport.inner_window(source.info, geometry.src_bounds)
        result = TileResult(*scene.native_tile(codes, source.info, inner, geometry.tile_crs, geometry.tile_bounds),
                            live=True)
    else:
        return _predicted(source, x, y, geometry, viewport_hint, disk)
    RESULTS.put(key, result)  # tiles cut from a scene's codes are not written again: the codes are on disk
    return result


def _predicted(source: _Source, x: int, y: int, geometry: TileGeometry, viewport_hint: Viewport | None,
               disk: Path) -> TileResult:
    """A live tile the model runs for now, in a region with the hinted view's other tiles."""
    # Why a loop: a tile queued ahead (asked=False, part of an announced viewport) is dropped when newer
    # tiles are queued, and predict_region reads `asked` without the in-flight lock, so it can cancel the
    # future that _live has just handed to this request. The job's done-callback then takes it out of
    # the in-flight table and a new try queues the tile afresh (a try made before that callback ran gets
    # the cancelled future again: hence a few tries). The last try has no hint: this tile alone, with
    # nothing queued ahead beside it for newer work to drop.
    for _ in range(3):
        try:
            result = TileResult(*_live(source, x, y, geometry, viewport_hint).result(), live=True)
            break
        except CancelledError:
            continue
    else:
        result = TileResult(*_live(source, x, y, geometry, None).result(), live=True)
    if not disk.exists():  # a request's tile is on disk when it returns (tiles predicted ahead: written later)
        atomic.write_bytes(disk, result.to_bytes())
    return result  # kept in memory by its job's callback (_store)


@dataclass(frozen=True)
class _Source:
    """The raster of a cache miss: its header and the card's bands in it, read once per request."""

    place: Place
    info: raster.RasterInfo
    indexes: list[int]

    @classmethod
    def read(cls, place: Place) -> _Source:
        ds, card = place.ds, place.loaded.card
        info = raster.check_image_dtype(raster.describe(ds.path), ds.id)  # the CLI's dtype rule (issue 22)
        bands = ds.bands or raster.band_names_for(info.count)
        return cls(place, info, inference.band_indexes(card, tuple(bands), ds.id))

    def job(self, x: int, y: int, asked: bool, geometry: TileGeometry | None = None) -> viewport.TileJob | None:
        """The live job of a tile (its ``geometry`` when the caller has it already), or None where the tile
        misses the raster or is too coarse to run live."""
        p = self.place
        g = _tile_geometry(self.info, p.tms_id, p.z, x, y) if geometry is None else geometry
        if not g.live(self.info):
            return None
        group = (p.loaded.key, p.ds.id, p.version, p.tms_id, p.z)
        return viewport.TileJob(p.loaded, p.ds, self.info, self.indexes, group, x, y, g.tile_crs, g.tile_bounds,
                                viewport.inner_window(self.info, g.src_bounds), Future(), asked)


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


def _live(source: _Source, x: int, y: int, geometry: TileGeometry, hint: Viewport | None) -> Future:
    """The future of tile (x, y): the one already queued, or a new job queued with the hinted viewport's
    tiles that are neither cached nor queued. Results are cached by each job's callback.

    The jobs (a reprojected footprint each, ~1 ms) are made under the lock on purpose: the other requests
    of a view arrive together and would each make the whole view's jobs again; waiting, they just join.
    Made outside it, a 12-tile view measured 1.22–1.29× instead of 1.46× (benchmarks/viewport.py)."""
    place = source.place
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
        jobs = [j for j in [source.job(x, y, True, geometry)] + [source.job(i, k, False) for i, k in others]
                if j is not None]
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


WARMING = threading.Event()  # set while this process predicts ahead (``warm``): /healthz says so to the launcher


def warm(datasets: list[Dataset], model: str | ModelCard) -> list[Path]:
    """Predict the whole of ``datasets`` with ``model`` ahead of any request (skipped where on disk already),
    so their tiles, at every zoom, are cut from it. A server's start-up work (``serve`` warms the home
    story's zone and patch), run in a background thread: problems go to stderr, nothing is raised."""
    done = []
    WARMING.set()
    try:
        for ds in datasets:
            try:
                t0 = time.monotonic()
                place = resolve(ds, model, 0)
                done.append(scene.scene_codes(place.loaded, ds, place.version))
                print(f"flair-viz: {ds.id} predicted ahead with {place.loaded.card.id} ({place.loaded.engine}) in "
                      f"{time.monotonic() - t0:.1f} s", file=sys.stderr, flush=True)
            except (FlairVizError, OSError) as exc:
                print(f"flair-viz: predicting {ds.id} ahead failed: {exc}", file=sys.stderr, flush=True)
    finally:
        WARMING.clear()
    return done
