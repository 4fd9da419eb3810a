"""Which engine runs a model, and the automatic choice.

Engines: torch; on the CPU also onnx (fp32 onnxruntime), openvino (fp32 OpenVINO), and two
*reduced-precision* ones, onnx-int8 (static int8, onnxruntime) and openvino-bf16 (bfloat16 OpenVINO,
fast where the CPU has native bf16: AMX, AVX-512 BF16). ``--engine`` on the CLI, ``$FLAIR_VIZ_ENGINE``
(``flair-viz serve --engine`` sets it) or ``auto``. ``auto`` is the fastest engine that keeps the argmax
of torch fp32 (benchmarks/engines.py measures it):

* on a GPU (cuda, mps): torch (autocast, channels_last); onnxruntime and OpenVINO run here on the CPU only;
* on the CPU, the first of :func:`auto_order` that qualifies: a reduced-precision engine when its
  recorded agreement with torch on the card's held-out real patches is at least ``MIN_AGREEMENT``,
  else an fp32 one (openvino where installed, else onnx: ≥ 99.5 % agreement, measured). A record is
  written when that engine is built: by ``--engine openvino-bf16``/``onnx-int8``, or in the background
  the first time ``auto`` loads the card on a CPU (``FLAIR_VIZ_INT8_BUILD=0`` turns that off), so later
  loads switch to it when it qualifies;
* torch when neither runtime is installed or the export fails: ``auto`` falls back with a warning that
  names the fix, while an explicit ``--engine onnx`` raises that error instead.

Calibration and agreement images are real aerial patches of the card's kind: ``$FLAIR_VIZ_CALIBRATION``
(a folder or glob of GeoTIFFs with the card's bands) or the demo FLAIR patches; the first
``CALIBRATION_WINDOWS`` calibrate int8, the others measure agreement.
"""

from __future__ import annotations

import glob
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.windows import Window

from flair_viz.core import atomic, config, raster
from flair_viz.core.errors import InvalidInput, InvalidModel, InvalidRaster, Misconfigured
from flair_viz.predict import onnx_engine, openvino_engine
from flair_viz.predict.bands import band_indexes, normalise
from flair_viz.predict.cards import ModelCard
from flair_viz.predict.geometry import WINDOW

ENGINES = ("torch", "onnx", "onnx-int8", "openvino", "openvino-bf16")
CPU_EXACT = ("openvino", "onnx")  # fp32: torch's classes up to float rounding; the faster first
REDUCED = ("openvino-bf16", "onnx-int8")  # used by auto only with a recorded held-out agreement
AUTO = "auto"
MIN_AGREEMENT = 0.98
CALIBRATION_WINDOWS = 2


def requested(name: str | None = None) -> str:
    """The engine asked for: ``name``, else ``$FLAIR_VIZ_ENGINE``, else ``auto``; checked."""
    name = (name or config.settings().engine or AUTO).strip().lower()
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
    order = auto_order()
    if not order:
        warnings.warn(f"neither onnxruntime nor openvino is installed, so {card.id} runs on torch (slower on a "
                      f"CPU); to fix: {onnx_engine.ORT_FIX}", stacklevel=2)
        return "torch"
    for engine in order:
        if engine in REDUCED:
            record = agreement_record(card, checksum, engine)
            if record is not None and record.get("agreement", 0.0) >= MIN_AGREEMENT:
                return engine
        else:
            return engine
    return order[-1]


def auto_order() -> list[str]:
    """The CPU engines installed here, fastest first (the order measured in docs/benchmarks.md):
    bf16 OpenVINO where the CPU has native bf16, int8 onnxruntime, fp32 OpenVINO, fp32 onnxruntime."""
    ort, ov = onnx_engine.available(), openvino_engine.available()
    order = []
    if ov and openvino_engine.bf16_native():
        order.append("openvino-bf16")
    if ort:
        order.append("onnx-int8")
    if ov:
        order.append("openvino")
    if ort:
        order.append("onnx")
    return order


def exact(engine: str) -> bool:
    """Whether ``engine`` computes in fp32 (torch's classes, no agreement record needed)."""
    return engine == "torch" or engine in CPU_EXACT


def reduced_wanted(card: ModelCard, checksum: str) -> list[str]:
    """The reduced-precision engines ``auto`` should build in the background, fastest first: those
    faster than the engine it picks now and not measured yet (none with ``FLAIR_VIZ_INT8_BUILD=0``)."""
    if not config.settings().int8_build:
        return []
    out = []
    for engine in auto_order():
        if engine not in REDUCED:
            break
        record = agreement_record(card, checksum, engine)
        if record is None:
            out.append(engine)
        elif record.get("agreement", 0.0) >= MIN_AGREEMENT:
            break  # a faster one already qualifies
    return out


# -- calibration images ------------------------------------------------------------------------------
def calibration_images() -> list[Path]:
    """Real aerial patches: ``$FLAIR_VIZ_CALIBRATION`` (folder or glob) or the demo FLAIR patches, sorted."""
    spec = config.settings().calibration
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


def pixel_agreement(module: Any, runner: Any, windows: list[np.ndarray], reference: Any = None) -> float:
    """Share of pixels whose argmax class is the same for ``runner`` and the torch module (fp32), or
    ``reference`` (an fp32 runner) when given instead of the module."""
    same = total = 0
    for w in windows:
        a = (reference(w[None]) if reference is not None else torch_logits(module, w[None])).argmax(axis=1)
        b = runner(w[None]).argmax(axis=1)
        same += int((a == b).sum())
        total += a.size
    return same / total


def graph_path(card: ModelCard, checksum: str, engine: str) -> Path:
    """The cached graph a CPU engine runs: the int8 one for onnx-int8, the one fp32 export for the others."""
    return onnx_engine.model_path(card, checksum, "int8" if engine == "onnx-int8" else "fp32")


def _record_path(card: ModelCard, checksum: str, engine: str) -> Path:
    if engine == "onnx-int8":
        return graph_path(card, checksum, engine).with_suffix(".agreement.json")
    return graph_path(card, checksum, engine).with_suffix(f".{engine}.agreement.json")


def agreement_record(card: ModelCard, checksum: str, engine: str) -> dict | None:
    """What a reduced-precision engine's build measured (agreement with torch fp32 on held-out images), if
    built; an OpenVINO record of another OpenVINO version does not count (its kernels may round otherwise)."""
    path = _record_path(card, checksum, engine)
    if not (path.exists() and graph_path(card, checksum, engine).exists()):
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if engine.startswith("openvino") and record.get("openvino") != openvino_engine.version():
        return None
    return record


def _write_record(card: ModelCard, checksum: str, engine: str, value: float, names: list[str],
                  reference: str = "torch") -> None:
    extra = {"openvino": openvino_engine.version()} if engine.startswith("openvino") else {}
    extra["reference"] = reference
    atomic.write_text(_record_path(card, checksum, engine),
                      json.dumps({"agreement": value, "held_out": names, "threshold": MIN_AGREEMENT,
                                  "engine": engine, **extra}))


# -- building a runner -----------------------------------------------------------------------------
def open_runner(engine: str, path: Path):
    """The session that runs a cached graph: onnxruntime for onnx/onnx-int8, OpenVINO for openvino*."""
    if engine.startswith("openvino"):
        return openvino_engine.OpenVinoRunner(path, engine)
    return onnx_engine.OnnxRunner(path, engine)


def runner(card: ModelCard, module: Any, checksum: str, engine: str):
    """The runner for a CPU ``engine``, exporting/quantising on first use; a reduced-precision engine
    measures and records its held-out agreement with torch the first time."""
    fp32 = onnx_engine.export(card, module, checksum)
    if exact(engine):
        return open_runner(engine, fp32)
    calib, held_out, names = split_windows(card)
    path = onnx_engine.quantise(card, fp32, checksum, calib) if engine == "onnx-int8" else fp32
    run = open_runner(engine, path)
    if agreement_record(card, checksum, engine) is None:
        _write_record(card, checksum, engine, pixel_agreement(module, run, held_out), names)
    return run


def torch_free_runner(card: ModelCard, checksum: str, engine: str, asked: str):
    """The runner of a cached graph without importing torch (built in a child process if missing), or None
    when ``auto`` must fall back to torch (the build failed: warned) or torch is loaded anyway."""
    path = graph_path(card, checksum, engine)
    ready = path.exists() and (exact(engine) or agreement_record(card, checksum, engine) is not None)
    if not ready and engine == "openvino-bf16" and path.exists() and not onnx_engine.build_here():
        return _bf16_without_torch(card, checksum, path)
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
    return open_runner(engine, path)


def _bf16_without_torch(card: ModelCard, checksum: str, fp32: Path):
    """The bf16 runner, its agreement measured in this process against the fp32 OpenVINO run of the same
    graph instead of torch (which fp32 matches on >= 99.5 % of pixels, tested): a CPU tile server then
    needs no child process importing torch (~1.2 GB) to qualify bf16. The record names its reference."""
    _, held_out, names = split_windows(card)
    run = open_runner("openvino-bf16", fp32)
    value = pixel_agreement(None, run, held_out, reference=open_runner("openvino", fp32))
    _write_record(card, checksum, "openvino-bf16", value, names, reference="openvino fp32")
    return run


def attach(card: ModelCard, module: Any, checksum: str, engine: str, asked: str) -> tuple[str, Any]:
    """(engine actually used, its CPU runtime runner, or None when torch runs it); ``auto`` falls back to
    torch with a warning on failure."""
    if engine == "torch":
        return "torch", None
    try:
        return engine, runner(card, module, checksum, engine)
    except (InvalidModel, Misconfigured) as exc:
        if asked != AUTO:
            raise
        warnings.warn(f"{exc.problem}; running {card.id} on torch instead (to fix: {exc.fix})", stacklevel=2)
        return "torch", None
