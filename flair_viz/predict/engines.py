"""Which engine runs a model: torch, onnx (fp32 onnxruntime) or onnx-int8, and the automatic choice.

``--engine`` on the CLI, ``$FLAIR_VIZ_ENGINE`` (``flair-viz serve --engine`` sets it) or ``auto``.
``auto`` is the fastest engine that keeps the argmax of torch fp32 (benchmarks/engines.py measures it):

* on a GPU (cuda, mps): torch (autocast, channels_last); onnxruntime here is CPU-only;
* on the CPU: onnx-int8 when its recorded agreement with torch on the card's held-out calibration
  images is at least ``INT8_MIN_AGREEMENT``, else onnx fp32 (≥ 99.5 % agreement, measured). The record
  is written when the int8 model is built: by ``--engine onnx-int8``, or in the background the first
  time ``auto`` loads the card on a CPU (``FLAIR_VIZ_INT8_BUILD=0`` turns that off), so later loads
  switch to int8 when it qualifies;
* torch when onnxruntime is missing or the export fails: ``auto`` falls back with a warning that
  names the fix, while an explicit ``--engine onnx`` raises that error instead.

Calibration and agreement images are real aerial patches of the card's kind: ``$FLAIR_VIZ_CALIBRATION``
(a folder or glob of GeoTIFFs with the card's bands) or the demo FLAIR patches; the first
``CALIBRATION_WINDOWS`` calibrate, the others measure agreement.
"""

from __future__ import annotations

import glob
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.windows import Window

from flair_viz.core import atomic, config, raster
from flair_viz.core.errors import InvalidInput, InvalidModel, InvalidRaster, Misconfigured
from flair_viz.predict import onnx_engine
from flair_viz.predict.bands import band_indexes, normalise
from flair_viz.predict.cards import ModelCard

ENGINES = ("torch", "onnx", "onnx-int8")
AUTO = "auto"
INT8_MIN_AGREEMENT = 0.98
CALIBRATION_WINDOWS = 2
WINDOW = 512


def requested(name: str | None = None) -> str:
    """The engine asked for: ``name``, else ``$FLAIR_VIZ_ENGINE``, else ``auto``; checked."""
    name = (name or os.environ.get("FLAIR_VIZ_ENGINE") or AUTO).strip().lower()
    if name not in (*ENGINES, AUTO):
        raise InvalidInput(f"Unknown engine {name!r}", f"use one of {', '.join((AUTO, *ENGINES))}")
    return name


def choose(card: ModelCard, checksum: str, device_type: str, name: str | None = None) -> str:
    """The engine to run ``card`` with on a device of ``device_type`` (see the module doc for ``auto``)."""
    name = requested(name)
    if name != AUTO:
        if name != "torch" and device_type != "cpu":
            raise InvalidInput(f"The {name} engine runs on the CPU only, but the device is {device_type}",
                               "use --device cpu with it, or --engine torch (the default on a GPU)")
        return name
    if device_type != "cpu":
        return "torch"
    if not onnx_engine.available():
        warnings.warn(f"onnxruntime is not installed, so {card.id} runs on torch (slower on a CPU); to fix: "
                      f"{onnx_engine.ORT_FIX}", stacklevel=2)
        return "torch"
    record = agreement_record(card, checksum)
    if record is not None and record.get("agreement", 0.0) >= INT8_MIN_AGREEMENT:
        return "onnx-int8"
    return "onnx"


def int8_wanted(card: ModelCard, checksum: str) -> bool:
    """Whether ``auto`` should build this card's int8 model in the background (not built yet, not disabled
    by ``FLAIR_VIZ_INT8_BUILD=0``)."""
    return os.environ.get("FLAIR_VIZ_INT8_BUILD", "1") != "0" and agreement_record(card, checksum) is None


# -- calibration images ------------------------------------------------------------------------------
def calibration_images() -> list[Path]:
    """Real aerial patches: ``$FLAIR_VIZ_CALIBRATION`` (folder or glob) or the demo FLAIR patches, sorted."""
    spec = os.environ.get("FLAIR_VIZ_CALIBRATION")
    if spec:
        found = sorted(Path(spec).glob("**/*.tif")) if Path(spec).is_dir() else sorted(map(Path, glob.glob(spec)))
    else:
        found = sorted((config.DEMO_DIR / "flair").glob("*/*/img/IMG_*.tif"))
    if len(found) < CALIBRATION_WINDOWS + 1:
        raise Misconfigured(f"int8 calibration needs at least {CALIBRATION_WINDOWS + 1} aerial images, found "
                            f"{len(found)} ({spec or 'demo FLAIR patches'})",
                            "set FLAIR_VIZ_CALIBRATION to a folder of GeoTIFF patches with the model's bands")
    return found


def read_window(card: ModelCard, path: Path) -> np.ndarray:
    """The top-left 512×512 window of an image, the card's bands, normalised (C, 512, 512) float32."""
    info = raster.describe(path)
    indexes = band_indexes(card, raster.band_names_for(info.count), path.name)
    inside = info.height >= WINDOW and info.width >= WINDOW
    data = raster.read(path, indexes, window=Window(0, 0, WINDOW, WINDOW), boundless=not inside, fill_value=0)
    return normalise(card, data)


def split_windows(card: ModelCard) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """(calibration windows, held-out windows, held-out image names)."""
    paths = calibration_images()
    try:
        wins = [read_window(card, p) for p in paths]
    except InvalidRaster as exc:
        raise Misconfigured(f"int8 calibration images do not fit model {card.id}: {exc.problem}",
                            "set FLAIR_VIZ_CALIBRATION to images with the model's bands") from None
    return wins[:CALIBRATION_WINDOWS], wins[CALIBRATION_WINDOWS:], [p.stem for p in paths[CALIBRATION_WINDOWS:]]


# -- agreement ----------------------------------------------------------------------------------
def torch_logits(module: Any, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).float().numpy()


def pixel_agreement(module: Any, runner: onnx_engine.OnnxRunner, windows: list[np.ndarray]) -> float:
    """Share of pixels whose argmax class is the same for ``runner`` and the torch module (fp32)."""
    same = total = 0
    for w in windows:
        a = torch_logits(module, w[None]).argmax(axis=1)
        b = runner(w[None]).argmax(axis=1)
        same += int((a == b).sum())
        total += a.size
    return same / total


def _record_path(card: ModelCard, checksum: str) -> Path:
    return onnx_engine.model_path(card, checksum, "int8").with_suffix(".agreement.json")


def agreement_record(card: ModelCard, checksum: str) -> dict | None:
    """What the int8 model's build measured (agreement with torch fp32 on held-out images), if built."""
    path = _record_path(card, checksum)
    if not (path.exists() and onnx_engine.model_path(card, checksum, "int8").exists()):
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# -- building a runner -----------------------------------------------------------------------------
def runner(card: ModelCard, module: Any, checksum: str, engine: str) -> onnx_engine.OnnxRunner:
    """The onnxruntime session for ``engine`` (onnx or onnx-int8), exporting/quantising on first use."""
    fp32 = onnx_engine.export(card, module, checksum)
    if engine == "onnx":
        return onnx_engine.OnnxRunner(fp32)
    calib, held_out, names = split_windows(card)
    int8 = onnx_engine.quantise(card, fp32, checksum, calib)
    run = onnx_engine.OnnxRunner(int8)
    if agreement_record(card, checksum) is None:
        value = pixel_agreement(module, run, held_out)
        atomic.write_text(_record_path(card, checksum),
                          json.dumps({"agreement": value, "held_out": names, "threshold": INT8_MIN_AGREEMENT}))
    return run


def torch_free_runner(card: ModelCard, checksum: str, engine: str, asked: str) -> onnx_engine.OnnxRunner | None:
    """The runner of a cached graph without importing torch (built in a child process if missing), or None
    when ``auto`` must fall back to torch (the build failed: warned) or torch is loaded anyway."""
    kind = "int8" if engine == "onnx-int8" else "fp32"
    path = onnx_engine.model_path(card, checksum, kind)
    ready = path.exists() and (kind == "fp32" or agreement_record(card, checksum) is not None)
    if not ready:
        if onnx_engine.build_here():
            return None  # torch is loaded: the in-process build (attach) is cheaper than a child
        try:
            onnx_engine.build_elsewhere(card, engine)
        except (InvalidModel, Misconfigured) as exc:
            if asked != AUTO:
                raise
            warnings.warn(f"{exc.problem}; running {card.id} on torch instead (to fix: {exc.fix})", stacklevel=2)
            return None
    return onnx_engine.OnnxRunner(path)


def attach(card: ModelCard, module: Any, checksum: str, engine: str, asked: str) -> tuple[str, Any]:
    """(engine actually used, runner or None); ``auto`` falls back to torch with a warning on failure."""
    if engine == "torch":
        return "torch", None
    try:
        return engine, runner(card, module, checksum, engine)
    except (InvalidModel, Misconfigured) as exc:
        if asked != AUTO:
            raise
        warnings.warn(f"{exc.problem}; running {card.id} on torch instead (to fix: {exc.fix})", stacklevel=2)
        return "torch", None
