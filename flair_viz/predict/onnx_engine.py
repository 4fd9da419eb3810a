"""ONNX on the CPU: export a card's network once, quantise it to int8, and run it with onnxruntime.

Why: on a laptop CPU onnxruntime runs the FLAIR U-Net about twice as fast as eager torch (fused
convolutions, no autograd bookkeeping), and its int8 model several times faster (benchmarks/engines.py).
Exports are cached in the cache folder, keyed by the checkpoint's sha256 and the export settings,
so a new checkpoint or a new exporter never reuses an old graph; every file is written atomically.

The legacy TorchScript exporter (``dynamo=False``) is used: it needs only the ``onnx`` package, not
onnxscript, and exports the smp U-Nets (resnet and timm ``tu-`` encoders) with dynamic batch, height
and width, so live tiles of any aligned size and 512 px windows share one graph.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from flair_viz.core import atomic, config, uncertainty
from flair_viz.core.errors import InvalidModel, Misconfigured
from flair_viz.predict.cards import ModelCard
from flair_viz.predict.runner import Channels, stats_from_probabilities

OPSET = 17
EXPORT_VERSION = 1  # bump when the export or quantisation recipe changes: old cache entries are then ignored
ORT_FIX = "install it with `.venv/bin/pip install onnxruntime==1.31.1 onnx==1.23.2`, or use --engine torch"


def ort():
    """The onnxruntime module, or a Misconfigured naming the fix when it is not installed."""
    try:
        import onnxruntime
    except ImportError:
        raise Misconfigured("The ONNX engine needs the onnxruntime package, which is not installed", ORT_FIX) from None
    return onnxruntime


def available() -> bool:
    """Whether onnxruntime imports here (the automatic engine choice falls back to torch when not)."""
    try:
        ort()
    except Misconfigured:
        return False
    return True


# -- cache paths ---------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _torch_version() -> str:
    """Installed torch's version, read once: importlib.metadata scans every installed package's metadata
    (about 5 ms), and this is asked on every live tile request through the engine choice."""
    from importlib.metadata import version

    return version("torch").split("+")[0]


def settings(card: ModelCard) -> dict[str, Any]:
    """What the exported graph depends on besides the weights: in the cache key (read without importing torch)."""
    return {"v": EXPORT_VERSION, "opset": OPSET, "torch": _torch_version(), "arch": card.arch,
            "encoder": card.encoder, "bands": list(card.in_bands), "classes": card.classes,
            "arch_params": card.arch_params}


def model_path(card: ModelCard, checksum: str, kind: str) -> Path:
    """``<cache>/onnx/<card>.<sha256[:16]>.<settings hash>.<kind>.onnx`` (kind: fp32 or int8)."""
    tag = hashlib.sha256(json.dumps(settings(card), sort_keys=True, default=str).encode()).hexdigest()[:10]
    return config.cache_dir() / "onnx" / f"{card.id}.{checksum[:16]}.{tag}.{kind}.onnx"


# -- export and quantisation ---------------------------------------------------------------------
def export(card: ModelCard, module: Any, checksum: str) -> Path:
    """The fp32 ONNX graph of ``module`` (cached); an InvalidModel naming the fix if torch cannot export it."""
    import torch

    path = model_path(card, checksum, "fp32")
    if path.exists():
        return path
    dummy = torch.zeros((1, len(card.in_bands), 512, 512), dtype=torch.float32)
    axes = {0: "batch", 2: "height", 3: "width"}
    module = module.to("cpu").eval()
    try:
        with atomic.atomic_path(path) as tmp, warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice says nothing to users
            torch.onnx.export(module, (dummy,), str(tmp), dynamo=False, opset_version=OPSET, input_names=["x"],
                              output_names=["logits"], dynamic_axes={"x": axes, "logits": axes})
    except Exception as exc:  # noqa: BLE001 - any exporter failure becomes one named condition
        raise InvalidModel(f"{card.label}: exporting {card.arch}/{card.encoder} to ONNX failed: "
                           f"{type(exc).__name__}: {str(exc)[:300]}",
                           "use --engine torch (or FLAIR_VIZ_ENGINE=torch) for this model") from None
    return path


def quantise(card: ModelCard, fp32: Path, checksum: str, windows: list[np.ndarray]) -> Path:
    """The int8 graph (static QDQ, per-channel weights), calibrated on ``windows`` (normalised C×H×W)."""
    path = model_path(card, checksum, "int8")
    if path.exists():
        return path
    ort()
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter([{"x": w[None].astype(np.float32)} for w in windows])

        def get_next(self):
            return next(self._it, None)

    pre = path.with_name(f".{path.name}.{os.getpid()}.pre.onnx")  # a step only, removed below
    try:
        with atomic.atomic_path(path) as tmp:
            quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
            quantize_static(str(pre), str(tmp), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    except Exception as exc:  # noqa: BLE001
        raise InvalidModel(f"{card.label}: int8 quantisation failed: {type(exc).__name__}: {str(exc)[:300]}",
                           "use --engine onnx (fp32) or --engine torch for this model") from None
    finally:
        pre.unlink(missing_ok=True)
    return path


def build_elsewhere(card: ModelCard, engine: str) -> None:
    """Export (and quantise) in a child process, so that a CPU tile server never imports torch (~0.8 GB RSS).

    The child runs the in-process build (``load_model`` with torch); its error, if any, is raised here
    as the same condition with the same fix.
    """
    from flair_viz.core import child

    # named, not imported: predict.models imports this module, and the child runs models' own build
    child.run("flair_viz.predict.models:build_cpu_engine", {"card_path": str(card.card_path), "engine": engine},
              what=f"{card.label}: building the {engine} model", crash=InvalidModel,
              fix="use --engine torch (or FLAIR_VIZ_ENGINE=torch) for this model",
              settings={"onnx_build_here": True, "int8_build": False}, timeout=1800)


def build_here() -> bool:
    """Build in this process when torch is loaded anyway (or a child build asks): no child to start."""
    import sys

    return "torch" in sys.modules or config.settings().onnx_build_here


# -- running --------------------------------------------------------------------------------------
def threads() -> int:
    """Intra-op threads: ``$FLAIR_VIZ_THREADS``, ``$OMP_NUM_THREADS``, torch's setting if torch is loaded,
    else the CPUs this process may use (no torch import just to ask)."""
    import sys

    asked = config.settings().threads
    asked = config.omp_threads() if asked is None else asked
    if asked is not None:
        return max(1, asked)
    if "torch" in sys.modules:
        return sys.modules["torch"].get_num_threads()
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def arena_enabled() -> bool:
    """onnxruntime's CPU memory arena: off by default (``FLAIR_VIZ_ORT_ARENA=1`` turns it on).

    Live tiles come in many input sizes; the arena keeps the largest blocks it ever allocated, so a
    tile server's RSS creeps up with it and stays flat without it, at no measurable speed cost on
    these networks (docs/benchmarks.md, engines section).
    """
    return config.settings().ort_arena


class OnnxRunner:
    """The onnx and onnx-int8 engines (:class:`~flair_viz.predict.runner.Runner`); thread-safe. Called
    directly it gives the graph's logits (N, classes, H, W) for normalised float32 inputs (N, C, H, W):
    what agreement with torch is measured on."""

    def __init__(self, path: Path, engine: str = "onnx") -> None:
        rt = ort()
        so = rt.SessionOptions()
        so.intra_op_num_threads = threads()
        so.inter_op_num_threads = 1
        so.graph_optimization_level = rt.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.enable_cpu_mem_arena = arena_enabled()
        so.log_severity_level = 3
        self.path = path
        self.engine = engine
        try:
            self.session = rt.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - a damaged cache file: remove it so the next load re-exports
            atomic.discard(path)
            raise InvalidModel(f"The cached ONNX model {path.name} could not be loaded ({str(exc)[:200]}); "
                               "it was removed", "retry: the model is exported again") from None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(["logits"], {"x": np.ascontiguousarray(x, dtype=np.float32)})[0]

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """The logits' softmax in place, in numpy: a CPU server that runs this engine never imports torch."""
        proba = self(batch)
        np.subtract(proba, proba.max(axis=1, keepdims=True), out=proba)
        np.exp(proba, out=proba)
        np.divide(proba, proba.sum(axis=1, keepdims=True), out=proba)
        return proba

    def stats(self, batch: np.ndarray, channels: Channels) -> list[uncertainty.PixelStats]:
        """From the probabilities: onnxruntime has no summarising graph here (OpenVINO's is the fast one)."""
        return stats_from_probabilities(self, batch, channels)
