"""Live prediction tiles: ``/datasets/{id}/predict/{model}/tiles/{tms}/{z}/{x}/{y}.png``.

Near native resolution a tile reads the aerial pixels under it plus a 128 px context margin, runs the
model on those *native* pixels, and reprojects the result onto the tile (nearest, so classes are never
blended). At coarser zooms the model would have to see resampled pixels, which it was not trained on,
so the tile is cut from a batch prediction of the whole scene (IGN sliding window, cached as a COG).

Tiles that arrive together are batched into one forward pass (a queue with a short maximum wait),
which is what keeps a GPU busy while a map viewport loads. Results are cached in memory (LRU) and on
disk, keyed by model checksum, dataset, file version and tile.
"""

from __future__ import annotations

import io
import math
import os
import queue
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from attrs import define
from fastapi import APIRouter, Depends, Query, Response
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from morecantile import tms as default_tms
from rasterio.enums import Resampling
from rasterio.transform import from_bounds
from rasterio.warp import reproject, transform_bounds
from rasterio.windows import Window
from rasterio.windows import transform as window_transform
from rio_tiler.colormap import cmap as rio_cmap
from rio_tiler.io import Reader
from rio_tiler.utils import render
from titiler.core.factory import FactoryExtension, TilerFactory

from flair_viz.core import atomic, classes, config, raster
from flair_viz.core.catalog import Catalog, Dataset
from flair_viz.core.errors import FlairVizError, ModelError
from flair_viz.predict import inference, models

TILE = 256
LIVE_MAX_RATIO = 3.0  # tile pixel / raster pixel (ground size): up to this, run the model on native pixels
CONTEXT_PX = inference.MARGIN  # source pixels of context read around a live tile, as in zone detection
ALIGN = 32  # U-Net input sizes must be divisible by the encoder's total stride
ERROR_RGBA = (230, 0, 0, 255)
UNCERTAINTY_CMAP = "magma"
Layer = Literal["class", "entropy", "margin", "error"]


# -- batching -----------------------------------------------------------------------------------
class TileBatcher:
    """One worker thread that gathers pending tile inputs for ``max_wait_s`` and runs them as one batch.

    Inputs of the same model and shape share a forward pass; the per-model :class:`inference.Forward`
    is kept, so a CUDA OOM back-off sticks. ``batch_sizes`` records what ran (for tests and benchmarks).
    """

    def __init__(self, max_wait_s: float = 0.015, max_batch: int = 8) -> None:
        self.max_wait_s = max_wait_s
        self.max_batch = max_batch
        self.batch_sizes: list[int] = []
        self._q: queue.Queue = queue.Queue()
        self._forwards: dict[tuple, inference.Forward] = {}
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, loaded: models.LoadedModel, x: np.ndarray) -> np.ndarray:
        """Probabilities (19, h, w) for one normalised input (C, h, w); blocks until its batch has run."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="flair-viz-tile-batcher", daemon=True)
                self._thread.start()
        fut: Future = Future()
        self._q.put((loaded, x, fut))
        return fut.result()

    def _run(self) -> None:
        while True:
            items = [self._q.get()]
            deadline = time.monotonic() + self.max_wait_s
            while len(items) < self.max_batch:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    items.append(self._q.get(timeout=left))
                except queue.Empty:
                    break
            groups: dict[tuple, list] = {}
            for it in items:
                groups.setdefault((it[0].key, it[1].shape), []).append(it)
            for group in groups.values():
                loaded = group[0][0]
                try:
                    fwd = self._forwards.setdefault(loaded.key, inference.Forward(loaded, self.max_batch))
                    out = fwd(np.stack([g[1] for g in group]))
                    self.batch_sizes.append(len(group))
                    for g, p in zip(group, out):
                        g[2].set_result(p)
                except BaseException as exc:  # noqa: BLE001 - hand every error to the waiting requests
                    for g in group:
                        if not g[2].done():
                            g[2].set_exception(exc)


# Tunable per deployment: a GPU wants bigger batches; the wait bounds the latency a batch can add.
BATCHER = TileBatcher(max_wait_s=float(os.environ.get("FLAIR_VIZ_TILE_WAIT_MS", "15")) / 1000,
                      max_batch=int(os.environ.get("FLAIR_VIZ_TILE_BATCH", "8")))


# -- caches -------------------------------------------------------------------------------------
class LRU:
    """A small thread-safe LRU: tiles are requested again on every pan, so recent ones stay in memory."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._d: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            if key in self._d:
                self._d.move_to_end(key)
                return self._d[key]
        return None

    def put(self, key, value) -> None:
        with self._lock:
            self._d[key] = value
            self._d.move_to_end(key)
            while len(self._d) > self.size:
                self._d.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._d.clear()


RESULTS = LRU(2048)  # TileResult per (checksum, dataset, version, tms, z, x, y)
PNGS = LRU(4096)  # rendered PNG bytes per (result key, layer, truth)
_scene_locks: dict[tuple[str, str], threading.Lock] = {}
_scene_locks_lock = threading.Lock()


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


def _code(u: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Uncertainty 0..1 as uint8 1..255 with 0 kept for "no data", so nearest resampling stays exact."""
    out = (1 + np.rint(np.clip(u, 0, 1) * 254)).astype(np.uint8)
    out[~valid] = 0
    return out


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
    c0, r0 = inv * (src_bounds[0], src_bounds[3])
    c1, r1 = inv * (src_bounds[2], src_bounds[1])
    col0, row0 = math.floor(min(c0, c1)) - CONTEXT_PX, math.floor(min(r0, r1)) - CONTEXT_PX
    w = math.ceil(max(c0, c1)) + CONTEXT_PX - col0
    h = math.ceil(max(r0, r1)) + CONTEXT_PX - row0
    w, h = -(-w // ALIGN) * ALIGN, -(-h // ALIGN) * ALIGN
    return Window(col0, row0, w, h)


def _warp(src: np.ndarray, src_transform, src_crs, dst_transform, dst_crs) -> np.ndarray:
    out = np.zeros((TILE, TILE), np.uint8)
    reproject(src, out, src_transform=src_transform, src_crs=src_crs, src_nodata=0, dst_transform=dst_transform,
              dst_crs=dst_crs, dst_nodata=0, resampling=Resampling.nearest)
    return out


def _live(loaded: models.LoadedModel, ds: Dataset, info: raster.RasterInfo, indexes: list[int], tile_crs,
          tile_bounds: tuple, src_bounds: tuple) -> TileResult:
    """Run the model on the native pixels under the tile (+ context), then crop/reproject onto the tile."""
    win = live_window(info, src_bounds)
    nodata = info.nodata
    data = raster.read(ds.path, indexes, window=win, boundless=True, fill_value=nodata if nodata is not None else 0)
    valid = np.zeros(data.shape[1:], bool)
    r0, c0 = max(0, -int(win.row_off)), max(0, -int(win.col_off))
    r1 = min(data.shape[1], info.height - int(win.row_off))
    c1 = min(data.shape[2], info.width - int(win.col_off))
    valid[r0:r1, c0:c1] = True
    if nodata is not None:
        valid &= ~np.all(data == nodata, axis=0)
    data[:, ~valid] = 0
    proba = BATCHER.submit(loaded, inference.normalise(loaded.card, data))
    # keep the centre: drop the context margin, as zone detection does
    m = CONTEXT_PX
    proba, valid = proba[:, m:-m, m:-m], valid[m:-m, m:-m]
    inner = Window(win.col_off + m, win.row_off + m, win.width - 2 * m, win.height - 2 * m)
    src_transform = window_transform(inner, info.transform)
    dst_transform = from_bounds(*tile_bounds, TILE, TILE)
    cls = inference.classes_from_proba(proba, valid)
    ent = _code(inference.entropy(proba), valid)
    mar = _code(inference.margin(proba), valid)
    return TileResult(*(_warp(a, src_transform, info.crs, dst_transform, tile_crs) for a in (cls, ent, mar)),
                      live=True)


def scene_prediction(loaded: models.LoadedModel, ds: Dataset) -> tuple[Path, Path]:
    """The batch prediction COGs (classes, probabilities) of a scene in the cache, computed once."""
    st = ds.path.stat()
    folder = config.cache_dir() / "predictions" / loaded.checksum[:16]
    stem = f"{ds.id}.{st.st_size}.{st.st_mtime_ns}"
    cls_path, proba_path = folder / f"{stem}.tif", folder / f"{stem}.proba.tif"
    key = (loaded.checksum, str(cls_path))
    with _scene_locks_lock:
        lock = _scene_locks.setdefault(key, threading.Lock())
    with lock:
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
    proba = np.asarray(pimg.data).astype(np.float32) / 255.0
    valid = cls > 0
    return TileResult(cls, _code(inference.entropy(proba), valid), _code(inference.margin(proba), valid), live=False)


def prediction(catalog: Catalog, ds: Dataset, model_id: str, z: int, x: int, y: int,
               tms_id: str = "WebMercatorQuad") -> TileResult:
    """The prediction of one tile, from memory, disk, or by running the model (live or batch)."""
    if ds.role != "image":
        raise FlairVizError(f"Dataset {ds.id} is a {ds.role} raster; predictions need an aerial image",
                            "use the catalog ID of an image (role image), e.g. IMG_000473")
    card = models.get_card(model_id)
    info = raster.describe(ds.path)
    bands = ds.bands or raster.band_names_for(info.count)
    indexes = inference.band_indexes(card, tuple(bands), ds.id)
    loaded = models.load_model(card)
    st = ds.path.stat()
    key = (loaded.checksum, ds.id, st.st_size, st.st_mtime_ns, tms_id, z, x, y)
    hit = RESULTS.get(key)
    if hit is not None:
        return hit
    disk = (config.cache_dir() / "predict-tiles" / loaded.checksum[:16] / f"{ds.id}.{st.st_size}.{st.st_mtime_ns}"
            / tms_id / str(z) / str(x) / f"{y}.npz")
    if disk.exists():
        try:
            result = TileResult.from_bytes(disk.read_bytes())
            RESULTS.put(key, result)
            return result
        except (OSError, ValueError, KeyError):
            disk.unlink(missing_ok=True)  # a damaged cache entry is recomputed, never served
    tile_crs, tile_bounds, src_bounds, ratio = _tile_geometry(info, tms_id, z, x, y)
    if not _intersects(src_bounds, info.bounds):
        result = _empty()
    elif ratio <= LIVE_MAX_RATIO:
        result = _live(loaded, ds, info, indexes, tile_crs, tile_bounds, src_bounds)
    else:
        result = _coarse(loaded, ds, tms_id, z, x, y)
    atomic.write_bytes(disk, result.to_bytes())
    RESULTS.put(key, result)
    return result


# -- rendering ----------------------------------------------------------------------------------
def _uncertainty_lut() -> np.ndarray:
    cm = rio_cmap.get(UNCERTAINTY_CMAP)
    lut = np.array([cm[min(255, max(0, round((v - 1) * 255 / 254)))] for v in range(256)], dtype=np.uint8)
    lut[0] = (0, 0, 0, 0)
    return lut


_UNC_LUT = _uncertainty_lut()
_PALETTE = classes.palette_rgba()


def _png(rgba: np.ndarray) -> bytes:
    return render(np.moveaxis(rgba[..., :3], -1, 0), mask=rgba[..., 3], img_format="PNG")


def truth_tile(truth: Dataset, tms_id: str, z: int, x: int, y: int) -> np.ndarray:
    """Ground truth on the tile grid in FLAIR-1 values (0 = none), read with nearest like the prediction."""
    with Reader(str(truth.path), tms=default_tms.get(tms_id)) as src:
        img = src.tile(x, y, z, tilesize=TILE, indexes=1, resampling_method="nearest", reproject_method="nearest")
    values = classes.to_flair1(np.asarray(img.data[0]).astype(np.uint8), truth.nomenclature)
    values[~(np.asarray(img.mask) > 0)] = 0
    return values


def render_layer(result: TileResult, layer: str, truth: np.ndarray | None = None) -> bytes:
    """PNG of one layer: class palette, uncertainty colour ramp, or red where truth and prediction differ."""
    if layer == "class":
        return _png(_PALETTE[result.classes])
    if layer in ("entropy", "margin"):
        return _png(_UNC_LUT[getattr(result, layer)])
    assert truth is not None
    wrong = (truth > 0) & (result.classes > 0) & (truth != result.classes)
    rgba = np.zeros((TILE, TILE, 4), np.uint8)
    rgba[wrong] = ERROR_RGBA
    return _png(rgba)


def prediction_png(catalog: Catalog, ds: Dataset, model_id: str, z: int, x: int, y: int, layer: str = "class",
                   tms_id: str = "WebMercatorQuad") -> bytes:
    """The PNG a map shows for one prediction tile; cached, so panning back costs a dictionary lookup."""
    truth = catalog.for_patch(ds.patch, "truth") if (layer == "error" and ds.patch) else None
    if layer == "error" and truth is None:
        raise LookupError(f"Dataset {ds.id} has no ground truth in the catalog, so there is no error layer")
    card = models.get_card(model_id)
    _, checksum = models.resolve_checkpoint(card)  # cached by file size and mtime: cheap
    st = ds.path.stat()
    pkey = (checksum, ds.id, st.st_size, st.st_mtime_ns, tms_id, z, x, y, layer, truth.id if truth else None)
    png = PNGS.get(pkey)
    if png is not None:
        return png
    result = prediction(catalog, ds, model_id, z, x, y, tms_id)
    png = render_layer(result, layer, truth_tile(truth, tms_id, z, x, y) if truth else None)
    PNGS.put(pkey, png)
    return png


def clear_caches() -> None:
    """Forget in-memory tiles (the disk cache stays; it is keyed by checksum so it cannot go stale)."""
    RESULTS.clear()
    PNGS.clear()


# -- routes -------------------------------------------------------------------------------------
def _not_found(problem: str, fix: str) -> JSONResponse:
    return JSONResponse(status_code=404, content={"detail": problem, "fix": fix})


class ModelsRouter:
    """``GET /models`` and ``GET /device``: what the UI needs to offer live predictions.

    Importing torch takes seconds; a background thread does it as the server starts, so the first
    live tile (and ``/device``) does not pay for it while the analyst waits.
    """

    def __init__(self) -> None:
        self.router = APIRouter()
        threading.Thread(target=models.device_name, name="torch-warm-up", daemon=True).start()

        @self.router.get("/models")
        def list_models() -> list[dict]:
            return [c.to_json() for c in models.list_cards()]

        @self.router.get("/device")
        def device() -> dict:
            return {"device": models.device_name()}


@define
class LivePredictionExtension(FactoryExtension):
    """``/datasets/{id}/predict/{model}/tiles/{tms}/{z}/{x}/{y}.png`` on the dataset factory."""

    def register(self, factory: TilerFactory) -> None:
        get_dataset, get_catalog = factory.catalog_dataset_dependency, factory.catalog_dependency

        @factory.router.get("/predict/{model_id}/tiles/{tileMatrixSetId}/{z}/{x}/{y}.png",
                            tags=["predict"], response_class=Response,
                            responses={200: {"content": {"image/png": {}}, "description": "prediction tile"}})
        def predict_tile(*,
            ds=Depends(get_dataset),  # injected: not an annotation, which would be looked up in globals
            catalog=Depends(get_catalog),
            model_id: Annotated[str, PathParam(description="model card ID (GET /models)", pattern=models.ID_RE.pattern)],
            tileMatrixSetId: Annotated[Literal[tuple(default_tms.list())], PathParam()],  # noqa: N803 (titiler's name)
            z: int, x: int, y: int,
            layer: Annotated[Layer, Query(description="class, entropy, margin, or error (needs ground truth)")] = "class",
        ) -> Response:
            try:
                models.get_card(model_id)
            except ModelError as exc:  # an unknown model is a missing resource; a broken one stays a 400
                return _not_found(exc.problem, exc.fix)
            try:
                png = prediction_png(catalog, ds, model_id, z, x, y, layer, tileMatrixSetId)
            except LookupError as exc:
                return _not_found(str(exc), "register the ground truth (role truth, same patch) or use layer=class")
            return Response(png, media_type="image/png", headers={"Cache-Control": "public, max-age=3600"})
