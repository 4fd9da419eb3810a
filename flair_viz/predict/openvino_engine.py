"""OpenVINO on the CPU: the card's cached fp32 ONNX graph, compiled for fp32 or for bfloat16.

Why: on Intel CPUs OpenVINO fuses the U-Net's convolutions better than onnxruntime, and on CPUs with
native bfloat16 (AMX or AVX-512 BF16: Sapphire Rapids and later, some Zen 4/5) its bf16 mode runs the
FLAIR U-Net several times faster than torch fp32 (benchmarks/engines.py). bf16 keeps 8 bits of mantissa,
so like int8 it is a *reduced-precision* engine: ``auto`` uses it only after its agreement with torch
fp32 on held-out real patches has been measured and recorded (:mod:`flair_viz.predict.engines`).

The graph is the one :mod:`flair_viz.predict.onnx_engine` exports (OpenVINO reads ONNX directly), so
there is one export per checkpoint, whichever CPU engine runs it; compiling takes well under a second
and is not cached on disk.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

from flair_viz.core import atomic
from flair_viz.core.errors import InvalidModel, Misconfigured
from flair_viz.predict import onnx_engine

OV_FIX = "install it with `.venv/bin/pip install openvino==2026.4.1`, or use --engine onnx"
PRECISION = {"openvino": "f32", "openvino-bf16": "bf16"}


def ov():
    """The openvino module, or a Misconfigured naming the fix when it is not installed."""
    try:
        import openvino
    except ImportError:
        raise Misconfigured("The OpenVINO engines need the openvino package, which is not installed", OV_FIX) from None
    return openvino


def available() -> bool:
    """Whether openvino imports here (``auto`` then also considers it)."""
    try:
        ov()
    except Misconfigured:
        return False
    return True


def version() -> str:
    return ov().__version__


@lru_cache(maxsize=1)
def _core():
    return ov().Core()


def bf16_native() -> bool:
    """Whether this CPU computes bf16 in hardware: elsewhere OpenVINO emulates it, slower than fp32."""
    try:
        return "BF16" in _core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception:  # noqa: BLE001 - a plugin that cannot say is taken as "no"
        return False


def _with_softmax(model):
    """The model with a softmax over its class axis after the logits (argmax unchanged, measured)."""
    from openvino import opset13

    ppp = ov().preprocess.PrePostProcessor(model)
    ppp.output(0).postprocess().custom(lambda node: opset13.softmax(node, 1).output(0))
    return ppp.build()


class OpenVinoRunner:
    """Softmax probabilities (N, classes, H, W) float32 for normalised float32 inputs (N, C, H, W);
    thread-safe. The softmax is appended to the graph (``gives_proba``): fused, it costs a tenth of numpy's.

    One compiled model, one infer request per calling thread (requests are not shareable). Inputs of a
    new shape cost a one-off re-plan of ~0.1–0.3 s; the viewport keeps its chunk shapes few for that reason.
    """

    gives_proba = True

    def __init__(self, path: Path, engine: str) -> None:
        self.path = path
        self.engine = engine
        config = {"INFERENCE_PRECISION_HINT": PRECISION[engine], "INFERENCE_NUM_THREADS": onnx_engine.threads(),
                  "PERFORMANCE_HINT": "LATENCY"}
        ov()  # the named error when openvino is not installed, even if an earlier call cached a Core
        try:
            self.compiled = _core().compile_model(_with_softmax(_core().read_model(str(path))), "CPU", config)
        except Exception as exc:  # noqa: BLE001 - a damaged cache file: remove it so the next load re-exports
            atomic.discard(path)
            raise InvalidModel(f"OpenVINO could not load the cached model {path.name} ({str(exc)[:200]}); "
                               "it was removed", "retry: the model is exported again, or use --engine onnx") from None
        self._local = threading.local()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        req = getattr(self._local, "request", None)
        if req is None:
            req = self._local.request = self.compiled.create_infer_request()
        out = req.infer({0: np.ascontiguousarray(x, dtype=np.float32)})
        return np.array(out[0], dtype=np.float32, copy=True)  # the request reuses its output buffer
