"""Run a model over a raster the way IGN's zone detection does, streaming windows so memory stays flat.

Algorithm (IGN FLAIR zone detection): 512 px windows, a 128 px margin, stride 512 − 2·128 = 256,
softmax, keep only the centre of each window. Two details make it exact where it can be:

* the last window of a row/column is shifted back inside the scene instead of hanging past the edge,
  so edge pixels are predicted from real pixels; scenes smaller than a window are read *boundless*
  (zero-filled, marked nodata). A 512×512 FLAIR patch is therefore exactly one forward pass.
* each pixel is kept from the window where it lies furthest from the border (the centres tile the
  scene), so no pixel closer than 128 px to a window edge is used unless it is at the scene's edge.

Probabilities are always returned in FLAIR-1 order (channel k = FLAIR-1 value k+1, 19 channels),
whatever the model's own nomenclature, so every consumer shares one class table.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window

from flair_viz.core import classes, cog, raster, uncertainty
from flair_viz.core.errors import InvalidInput, InvalidRaster, Misconfigured
from flair_viz.predict.bands import band_indexes, normalise
from flair_viz.predict.cards import ModelCard, get_card
from flair_viz.predict.geometry import MARGIN, WINDOW
from flair_viz.predict.models import LoadedModel, load_model
from flair_viz.predict.runner import Channels, OutOfMemory

STRIDE = WINDOW - 2 * MARGIN
K = classes.N_CLASSES

__all__ = ["WINDOW", "MARGIN", "STRIDE", "predict_proba_array", "predict_file", "band_indexes", "normalise",
           "Forward", "PROBA_VALUES", "classes_from_proba", "window_plan"]


# -- window geometry -----------------------------------------------------------------------------
def window_plan(length: int, window: int | None = None, margin: int | None = None) -> list[tuple[int, int, int]]:
    """Along one axis: ``(origin, keep_start, keep_end)`` per window; the kept ranges partition [0, length)."""
    window = WINDOW if window is None else window
    margin = MARGIN if margin is None else margin
    if length <= window:
        return [(0, 0, length)]
    stride = window - 2 * margin
    origins = list(range(0, length - window, stride)) + [length - window]
    plan = []
    for i, o in enumerate(origins):
        start = 0 if i == 0 else plan[-1][2]
        end = length if i == len(origins) - 1 else o + window - margin
        plan.append((o, start, end))
    return plan


@dataclass(frozen=True)
class Tile:
    """One window: where it is read from and which part of its result is kept."""

    row: int
    col: int
    keep_r0: int
    keep_r1: int
    keep_c0: int
    keep_c1: int

    @property
    def out_window(self) -> Window:
        return Window(self.keep_c0, self.keep_r0, self.keep_c1 - self.keep_c0, self.keep_r1 - self.keep_r0)


def tiles_for(height: int, width: int) -> list[Tile]:
    return [Tile(r, c, rs, re_, cs, ce) for r, rs, re_ in window_plan(height) for c, cs, ce in window_plan(width)]


# -- forward with OOM back-off ------------------------------------------------------------------
class Forward:
    """FLAIR-1 probabilities (or pixel stats) for normalised batches, whatever the engine; on running out
    of GPU memory it halves its batch size and retries.

    The engine is the model's :class:`~flair_viz.predict.runner.Runner`: Forward adds what every engine
    shares, the FLAIR-1 channel order and the batch splitting. The halved size sticks for later batches,
    so a scene that once ran out of memory does not keep paying for failed attempts. Splitting a batch
    never changes a sample's result.
    """

    def __init__(self, loaded: LoadedModel, batch_size: int = 4) -> None:
        if batch_size < 1:
            raise InvalidInput(f"Batch size must be at least 1 (got {batch_size})", "use --batch-size 1 or more")
        self.loaded = loaded
        self.batch_size = batch_size
        self.channels = Channels.of(loaded.card)

    def _in_batches(self, run: Callable[[np.ndarray], Any], batch: np.ndarray) -> list:
        """``run`` over pieces of at most ``batch_size`` samples, halving the size when one does not fit."""
        out = []
        i = 0
        while i < len(batch):
            chunk = batch[i:i + self.batch_size]
            try:
                out.append(run(chunk))
            except OutOfMemory:
                if self.batch_size == 1:
                    raise Misconfigured(f"Model {self.loaded.card.id} runs out of GPU memory even with batch size 1 "
                                        f"on {tuple(chunk.shape[2:])} px windows",
                                        "free GPU memory (other processes?) or use --device cpu") from None
                self.batch_size = max(1, self.batch_size // 2)
                continue
            i += len(chunk)
        return out

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        runner = self.loaded.runner
        out = self._in_batches(lambda b: self.channels.flair1(runner.probabilities(b)), batch)
        return np.concatenate(out) if len(out) > 1 else out[0]

    def stats(self, batch: np.ndarray) -> list[uncertainty.PixelStats]:
        """Per-window argmax (FLAIR-1 band index), entropy and margin of a normalised batch: what a live
        region keeps. An engine that summarises in its graph (OpenVINO) spares the region the copy of 76
        bytes per pixel of probabilities and the numpy pass over them: about half its time on a CPU with
        fast bf16 (:mod:`flair_viz.predict.openvino_engine`)."""
        runner = self.loaded.runner
        return [s for part in self._in_batches(lambda b: runner.stats(b, self.channels), batch) for s in part]


# -- per-pixel summaries ------------------------------------------------------------------------
def classes_from_proba(proba: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """FLAIR-1 class values (1..19, uint8) from FLAIR-1-ordered probabilities; 0 where not valid."""
    out = (proba.argmax(axis=0) + 1).astype(np.uint8)
    if valid is not None:
        out[~valid] = classes.NODATA
    return out



# -- sliding window core ------------------------------------------------------------------------
ReadFn = Callable[[int, int], tuple[np.ndarray, np.ndarray]]  # (row, col) -> (C×512×512 uint8, valid 512×512)


def _sliding(forward: Forward, card: ModelCard, height: int, width: int, read: ReadFn,
             progress: bool, desc: str) -> Iterator[tuple[Tile, np.ndarray, np.ndarray]]:
    """Yield (tile, kept probabilities, kept validity) window by window, reading the next batch ahead."""
    tiles = tiles_for(height, width)
    batches = [tiles[i:i + forward.batch_size] for i in range(0, len(tiles), forward.batch_size)]

    def load(batch: list[Tile]) -> tuple[np.ndarray, np.ndarray]:
        pairs = [read(t.row, t.col) for t in batch]
        return np.stack([normalise(card, p[0]) for p in pairs]), np.stack([p[1] for p in pairs])

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(tiles), desc=desc, unit="window", leave=False)
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(load, batches[0]) if batches else None
        for bi, batch in enumerate(batches):
            x, valid = pending.result()  # type: ignore[union-attr]
            pending = pool.submit(load, batches[bi + 1]) if bi + 1 < len(batches) else None
            proba = forward(x)
            for j, t in enumerate(batch):
                r0, r1 = t.keep_r0 - t.row, t.keep_r1 - t.row
                c0, c1 = t.keep_c0 - t.col, t.keep_c1 - t.col
                yield t, proba[j, :, r0:r1, c0:c1], valid[j, r0:r1, c0:c1]
            if bar is not None:
                bar.update(len(batch))
    if bar is not None:
        bar.close()


PROBA_VALUES = np.arange(1, K + 1, dtype=np.uint8)  # FLAIR-1 value of each probability channel we return


def predict_proba_array(loaded: LoadedModel, image_chw_uint8: np.ndarray, batch_size: int = 4,
                        valid: np.ndarray | None = None, bands: tuple[str, ...] | None = None) -> np.ndarray:
    """Probabilities (19, H, W) float32 in FLAIR-1 order (channel k = value k+1, see PROBA_VALUES).

    The image holds the card's bands in order, or names its bands with ``bands`` (default: the FLAIR
    layout for its band count, e.g. 5 = R, G, B, NIR, elevation) and the card's are picked by name.
    Same sliding-window algorithm as :func:`predict_file`; padding beyond the image is zero, like a
    boundless read. ``valid`` (H, W) marks pixels to keep; others get probability 0 everywhere.
    """
    card = loaded.card
    img = np.asarray(image_chw_uint8)
    if img.ndim == 3 and (bands or img.shape[0] != len(card.in_bands)):
        names = tuple(bands) if bands else raster.BAND_LAYOUTS.get(img.shape[0], ())
        if len(names) == img.shape[0]:
            img = img[[i - 1 for i in band_indexes(card, names, "The image array")]]
    if img.ndim != 3 or img.shape[0] != len(card.in_bands):
        raise InvalidInput(f"Image array has shape {img.shape} but model {card.id} ({card.card_path.name}) needs "
                           f"{len(card.in_bands)} bands ({', '.join(card.in_bands)}) as (bands, height, width)",
                           "select the card's bands, in order, before calling predict_proba_array")
    _, h, w = img.shape
    ok = np.ones((h, w), dtype=bool) if valid is None else np.asarray(valid, dtype=bool)

    size = WINDOW

    def read(row: int, col: int) -> tuple[np.ndarray, np.ndarray]:
        win = np.zeros((img.shape[0], size, size), dtype=img.dtype)
        v = np.zeros((size, size), dtype=bool)
        part = img[:, row:row + size, col:col + size]
        win[:, :part.shape[1], :part.shape[2]] = part
        v[:part.shape[1], :part.shape[2]] = ok[row:row + size, col:col + size]
        win[:, ~v] = 0
        return win, v

    out = np.zeros((K, h, w), dtype=np.float32)
    for t, proba, v in _sliding(Forward(loaded, batch_size), card, h, w, read, progress=False, desc=""):
        out[:, t.keep_r0:t.keep_r1, t.keep_c0:t.keep_c1] = proba * v
    return out


def _file_reader(ds: rasterio.DatasetReader, indexes: list[int], info: raster.RasterInfo) -> ReadFn:
    """Window reader for a raster file opened once for the whole scene (windows share GDAL's block cache: a
    band stack's JPEG 2000 dalles are decoded once, not once per overlapping window); boundless only where a
    window leaves the scene. The windows are read one after the other (one reading thread), never concurrently."""
    nodata = info.nodata
    size = WINDOW

    def read(row: int, col: int) -> tuple[np.ndarray, np.ndarray]:
        return raster.read_window(ds, indexes, Window(col, row, size, size), nodata)

    return read


def _loaded(model: str | ModelCard | LoadedModel, device: str | None) -> LoadedModel:
    if isinstance(model, LoadedModel):
        return model
    return load_model(get_card(model) if isinstance(model, str) else model, device)


def _check_outputs(input_path: Path, info: raster.RasterInfo, output_path: Path, proba_path: Path | None) -> None:
    if np.dtype(info.dtype) != np.uint8:
        raise InvalidRaster(f"{input_path.name} is {info.dtype}; FLAIR models expect uint8 aerial images",
                            "convert the image to 8-bit (0..255) per band first")
    if proba_path is not None and proba_path.resolve() == output_path.resolve():
        raise InvalidInput("The class output and the probability output are the same file",
                           "give --proba a different file name")


def predict_file(model_id_or_card: str | ModelCard | LoadedModel, input_path: str | os.PathLike[str],
                 output_path: str | os.PathLike[str], proba_path: str | os.PathLike[str] | None = None,
                 device: str | None = None, batch_size: int = 4, progress: bool = True,
                 bands: tuple[str, ...] | None = None) -> Path:
    """Predict one scene into a class COG (FLAIR-1 values 1..19, 0 = nodata) and optionally a probability COG.

    Memory is bounded by a batch of windows: windows are streamed and their kept centres written in
    place. Outputs appear under their final names only when complete (:mod:`flair_viz.core.cog`).
    ``bands`` names the file's bands when they are not the FLAIR layout for its band count.
    """
    loaded = _loaded(model_id_or_card, device)
    card = loaded.card
    input_path, output_path = Path(input_path), Path(output_path)
    proba_path = Path(proba_path) if proba_path is not None else None
    info = raster.check_image(input_path, bands)
    file_bands = tuple(bands) if bands else raster.band_names_for(info.count)
    indexes = band_indexes(card, file_bands, input_path.name)
    _check_outputs(input_path, info, output_path, proba_path)
    forward = Forward(loaded, batch_size)
    grid = {"width": info.width, "height": info.height, "crs": info.crs, "transform": info.transform}
    # the probability writer is entered first so that it exits last: the class COG is complete
    # under its name before the (slower, 19-band) probability COG is copied
    with ExitStack() as stack:
        src = stack.enter_context(raster.open_raster(input_path))
        windows = _sliding(forward, card, info.height, info.width, _file_reader(src, indexes, info), progress,
                           desc=f"{card.id} {input_path.name}")
        proba_ds = None
        if proba_path is not None:  # probabilities are averaged in overviews, classes never are
            proba_ds = stack.enter_context(cog.cog_writer(proba_path, {**grid, "count": K, "dtype": "uint8"},
                                                          resampling="average"))
            for c in classes.FLAIR1_CLASSES:
                proba_ds.set_band_description(c.value, f"p({c.name}) x255")
        cls_ds = stack.enter_context(cog.cog_writer(output_path, {**grid, "count": 1, "dtype": "uint8", "nodata": 0}))
        cls_ds.write_colormap(1, classes.colormap())  # must precede pixel writes in GeoTIFF
        for t, proba, valid in windows:
            cls_ds.write(classes_from_proba(proba, valid), 1, window=t.out_window)
            if proba_ds is not None:
                proba_ds.write(np.rint(proba * 255.0).astype(np.uint8) * valid, window=t.out_window)
    return output_path
