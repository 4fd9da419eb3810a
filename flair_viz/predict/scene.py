"""A whole scene's prediction as codes on its native grid, computed once and kept on disk; tiles cut from it.

Why: a map that opens on a zone at a coarse zoom shows every pixel of it, so the model has to see every
native pixel anyway. It used to run the IGN sliding window (512 px windows, a 128 px margin each: 3.2×
the scene's pixels) and write a 19-band probability COG, 28 s for the 512 m demo zone on the 2-core VM, of
which 13 s were spent writing the probabilities. Here the scene is cut into the region batcher's large
chunks (one 128 px context margin per chunk, :func:`flair_viz.predict.viewport.chunk_grid`, the same
``FLAIR_VIZ_REGION_MPX`` memory bound), and only what a map shows is kept: class, entropy and margin codes
(3 bands, :func:`flair_viz.predict.viewport.codes`). Every tile of that scene, at every zoom, is then cut
from this one prediction with nearest resampling: the model's own output for those pixels, never a
resampled input. The file is keyed like the tile caches, by model checksum, engine and the file's
version, so a changed checkpoint or a replaced image is predicted again, never served stale.

:func:`flair_viz.predict.live.warm` computes the scenes a server will surely be asked for (the home story's
zone and patch) when it starts, so the first visitor finds them done.
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_bounds
from rasterio.windows import Window
from rasterio.windows import transform as window_transform
from rio_tiler.io import Reader

from flair_viz.core import atomic, cog, config, raster
from flair_viz.core.catalog import Dataset
from flair_viz.core.errors import InvalidInput
from flair_viz.predict import inference, models, viewport
from flair_viz.predict.viewport import TILE

BANDS = ("class (FLAIR-1, 0 = no data)", "entropy code (1..255, 0 = none)", "1 - margin code (1..255, 0 = none)")

_locks: dict[str, threading.Lock] = {}
_locks_lock = threading.Lock()
_gate = threading.Lock()  # one scene prediction at a time in a server: its memory is bounded by one chunk


def codes_path(loaded: models.LoadedModel, ds: Dataset, version: str) -> Path:
    """Where a scene's codes live: under the model's results tag (checksum prefix and engine) and the
    file's version (:func:`flair_viz.predict.live.file_version`), as the tile caches are."""
    return config.cache_dir() / "predictions" / loaded.results_tag / f"{ds.id}.{version}.codes.tif"


def ready(loaded: models.LoadedModel, ds: Dataset, version: str) -> Path | None:
    """The scene's codes when they are on disk already (a ``stat``), else None."""
    path = codes_path(loaded, ds, version)
    return path if path.exists() else None


def scene_codes(loaded: models.LoadedModel, ds: Dataset, version: str) -> Path:
    """The scene's codes COG, computed once: concurrent callers for one scene wait for the first, and
    different scenes run one at a time (``_gate``)."""
    path = codes_path(loaded, ds, version)
    with _locks_lock:
        lock = _locks.setdefault(str(path), threading.Lock())
    with lock:
        if not path.exists():
            with _gate:
                if not path.exists():
                    _sweep_dead(path)
                    compute(loaded, ds, path)
    return path


STALE_S = 600  # a scratch nobody wrote to for this long belongs to a server that died while predicting


def _sweep_dead(path: Path) -> list[Path]:
    """Remove the work files a killed server left for this scene (a stopped server does not wait for its
    predictions ahead). Only stale ones: another process may be predicting the same scene right now, and its
    scratch is written to at every chunk."""
    now = time.time()
    dead = [p for p in atomic.work_files(path.parent, {path.name}) if now - p.stat().st_mtime > STALE_S]
    for p in dead:
        p.unlink(missing_ok=True)
    return dead


def grid(height: int, width: int) -> tuple[int, int]:
    """(rows, cols) of chunks for a whole scene: the region batcher's choice (fewest input pixels under
    the budget), or, for scenes too large for its 32 × 32 grid, as many chunks as the budget needs."""
    nr, nc = viewport.chunk_grid(height, width)
    budget = viewport.region_mpx() * 1e6
    if viewport._padded(-(-height // nr)) * viewport._padded(-(-width // nc)) <= budget:
        return nr, nc
    side = max(viewport.SHAPE_STEP, int(math.isqrt(int(budget))) // viewport.SHAPE_STEP * viewport.SHAPE_STEP
               - 2 * viewport.CONTEXT_PX)
    return -(-height // side), -(-width // side)


def too_large(info: raster.RasterInfo) -> bool:
    """Whether the image is over ``FLAIR_VIZ_MAX_SCENE_MPX``: see :func:`check_size`."""
    return info.width * info.height / 1e6 > config.settings().max_scene_mpx


def check_size(ds: Dataset, info: raster.RasterInfo, live_from: int | None = None) -> None:
    """Refuse to predict whole an image larger than ``FLAIR_VIZ_MAX_SCENE_MPX``.

    Why: a coarse tile needs the whole image predicted, which for a zone is seconds but for a BD ORTHO
    stack of a département (hundreds of 25,000² px dalles) would keep a server's CPUs busy for days on one
    map view. Such an image shows live predictions from ``live_from``, the zoom where tiles are predicted
    from the pixels under them (:func:`flair_viz.predict.live.live_zoom`)."""
    if too_large(info):
        mpx, limit = info.width * info.height / 1e6, config.settings().max_scene_mpx
        where = f"zoom {live_from} or closer" if live_from is not None else "a closer zoom"
        raise InvalidInput(
            f"Image {ds.id} is too large to predict whole for a coarse map view ({mpx:,.0f} megapixels; the limit "
            f"is {limit:,.0f})",
            f"zoom in to {where}, where live predictions come from the pixels under each tile; or predict it once "
            f"with `flair-viz predict --model MODEL {ds.id} --out DIR` (in blocks, on Dask) and open the result; "
            "or raise FLAIR_VIZ_MAX_SCENE_MPX")


def compute(loaded: models.LoadedModel, ds: Dataset, out: Path) -> Path:
    """Predict every native pixel of ``ds`` in chunks with a 128 px margin each and write the codes COG."""
    info = raster.check_image_dtype(raster.describe(ds.path), ds.id)
    check_size(ds, info)
    bands = ds.bands or raster.band_names_for(info.count)
    indexes = inference.band_indexes(loaded.card, tuple(bands), ds.id)
    forward = inference.Forward(loaded, 1)
    nr, nc = grid(info.height, info.width)
    m = viewport.CONTEXT_PX
    profile = {"width": info.width, "height": info.height, "count": 3, "dtype": "uint8", "crs": info.crs,
               "transform": info.transform, "nodata": 0}
    with cog.cog_writer(out, profile) as dst:
        for band, text in enumerate(BANDS, 1):
            dst.set_band_description(band, text)
        for a, b in viewport._pieces(0, info.height, nr):
            for c, d in viewport._pieces(0, info.width, nc):
                h, w = viewport._padded(b - a), viewport._padded(d - c)
                data, valid = raster.read_window(ds.path, indexes, Window(c - m, a - m, w, h), info.nodata)
                stats = forward.stats(inference.normalise(loaded.card, data)[None])[0]
                keep = np.s_[m:m + b - a, m:m + d - c]
                dst.write(np.stack(viewport.codes(stats, valid[keep], keep)), window=Window(c, a, d - c, b - a))
                del stats, data
    return out


def native_tile(path: Path, info: raster.RasterInfo, inner: tuple[int, int, int, int], tile_crs,
                tile_bounds: tuple) -> tuple[np.ndarray, ...]:
    """A near-native tile's codes cut from a scene's codes: the pixels under it (``inner``, as the region
    batcher reads them) warped onto the tile grid, nearest, as :func:`flair_viz.predict.viewport._resolve` does."""
    r0, c0, r1, c1 = inner
    out = np.zeros((3, r1 - r0, c1 - c0), np.uint8)  # outside the scene: no data
    rr0, cc0, rr1, cc1 = max(r0, 0), max(c0, 0), min(r1, info.height), min(c1, info.width)
    if rr1 > rr0 and cc1 > cc0:
        with rasterio.open(path) as src:
            out[:, rr0 - r0:rr1 - r0, cc0 - c0:cc1 - c0] = src.read(window=Window(cc0, rr0, cc1 - cc0, rr1 - rr0))
    src_transform = window_transform(Window(c0, r0, c1 - c0, r1 - r0), info.transform)
    return tuple(viewport.warp(out, src_transform, info.crs, from_bounds(*tile_bounds, TILE, TILE),
                               tile_crs))


def coarse_tile(path: Path, tms, z: int, x: int, y: int) -> tuple[np.ndarray, ...]:
    """A coarse tile's codes cut from a scene's codes with nearest resampling (overviews are nearest too:
    :data:`flair_viz.core.cog.COG_OPTIONS`), so every tile pixel holds one real pixel's codes."""
    with Reader(str(path), tms=tms) as src:
        img = src.tile(x, y, z, tilesize=TILE, indexes=(1, 2, 3), resampling_method="nearest",
                       reproject_method="nearest")
    data = np.asarray(img.data).astype(np.uint8)
    data[:, ~(np.asarray(img.mask) > 0)] = 0
    return data[0], data[1], data[2]

