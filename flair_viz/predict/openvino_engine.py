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

import queue
import threading
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path

import numpy as np

from flair_viz.core import atomic, uncertainty
from flair_viz.core.errors import InvalidModel, Misconfigured
from flair_viz.predict import onnx_engine
from flair_viz.predict.runner import Channels, stats_from_summaries

OV_FIX = "install it with `.venv/bin/pip install openvino==2026.4.1`, or use --engine onnx"
PRECISION = {"openvino": "f32", "openvino-bf16": "bf16"}
REQUESTS = 2  # concurrent inferences per plan: the live-region worker and one scene prediction
SHAPES = 2  # static-shape plans kept per model: a viewport's chunk shape and a lone tile's, or a scene's windows


def ov():
    """The openvino module, or a Misconfigured naming the fix when it is not installed.

    OpenVINO's ``import openvino`` imports its model converter, which sends a usage event to Google
    Analytics from a forked process unless the user opted out in ``~/intel/openvino_telemetry``
    (openvino-telemetry, a dependency of openvino). FLAIR Viz works offline and must not phone home,
    and a fork of a tile server with hundreds of MB mapped is no small thing, so the telemetry package
    is made unimportable in this process first: the converter then uses its own no-op stub."""
    import sys

    if "openvino" not in sys.modules:
        sys.modules.setdefault("openvino_telemetry", None)  # `import openvino_telemetry` raises ImportError
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


def _with_outputs(model):
    """The model with a softmax over its class axis after the logits (argmax unchanged, measured), and
    three summaries of it per pixel: the argmax, the top-1 − top-2 gap and the entropy in nats, the
    formulas of :func:`flair_viz.core.uncertainty.pixel_stats` (tests/test_engines.py checks them equal)."""
    from openvino import opset13 as ops

    axis = ops.constant(np.int64(1))
    proba = ops.softmax(model.get_results()[0].input_value(0), 1)
    top = ops.topk(proba, ops.constant(np.int64(2)), 1, "max", "value", "i32")
    values = ops.split(top.output(0), axis, 2)
    gap = ops.squeeze(ops.subtract(values.output(0), values.output(1)), axis)
    argmax = ops.squeeze(ops.split(top.output(1), axis, 2).output(0), axis)
    xlogx = ops.multiply(proba, ops.log(ops.maximum(proba, ops.constant(np.float32(1e-30)))))
    entropy = ops.negative(ops.reduce_sum(xlogx, axis, False))
    results = []
    for name, node in (("proba", proba), ("argmax", argmax), ("gap", gap), ("entropy", entropy)):
        result = ops.result(node)
        result.output(0).get_tensor().set_names({name})
        results.append(result)
    return ov().Model(results, model.get_parameters(), "flair-viz")


class OpenVinoRunner:
    """The openvino and openvino-bf16 engines (:class:`~flair_viz.predict.runner.Runner`); thread-safe.
    Softmax probabilities (N, classes, H, W) float32 for normalised float32 inputs (N, C, H, W), or their
    per-pixel summaries (:meth:`stats`). The softmax is appended to the graph: fused, it costs a tenth of
    numpy's (~10 ms a batch against ~100 ms, a third of a bf16 forward). Outputs are computed together;
    only those asked for are copied out of the request's buffers.

    Each input shape gets its own *static* plan (the graph reshaped to that shape, then compiled: about
    0.2 s). Why not one dynamic-shape model: OpenVINO's CPU plugin packs a static graph's intermediate
    buffers with its memory solver, but gives a dynamic one fresh buffers per tensor. With the probability
    output left out where only pixel stats are asked (live regions), a plan needs a third less memory: a
    2.9 Mpx chunk of the full U-Net ResNet34 in bf16 takes 0.9 GB instead of 1.3 GB at the same speed
    (benchmarks/plan_memory.py). At most ``SHAPES`` plans are kept (least recently used first out), each
    with at most ``REQUESTS`` infer requests lent to calling threads one at a time (a request is not
    shareable, and it holds its plan's buffers, so only the plan in use keeps idle ones).
    """

    def __init__(self, path: Path, engine: str) -> None:
        self.path = path
        self.engine = engine
        self.config = {"INFERENCE_PRECISION_HINT": PRECISION[engine], "INFERENCE_NUM_THREADS": onnx_engine.threads(),
                       "PERFORMANCE_HINT": "LATENCY"}
        ov()  # the named error when openvino is not installed, even if an earlier call cached a Core
        try:
            self.model = _with_outputs(_core().read_model(str(path)))
        except Exception as exc:  # noqa: BLE001 - a damaged cache file: remove it so the next load re-exports
            atomic.discard(path)
            raise InvalidModel(f"OpenVINO could not load the cached model {path.name} ({str(exc)[:200]}); "
                               "it was removed", "retry: the model is exported again, or use --engine onnx") from None
        self._plans: OrderedDict[tuple[tuple[int, ...], tuple[str, ...]], _Plan] = OrderedDict()
        self._lock = threading.Lock()

    def _plan(self, shape: tuple[int, ...], names: tuple[str, ...]) -> _Plan:
        """The plan for an input shape that computes ``names``: a plan without the probabilities (what live
        regions ask for) does not hold their 76 bytes a pixel of output buffer."""
        outputs = ("proba", "argmax", "gap", "entropy") if "proba" in names else ("argmax", "gap", "entropy")
        with self._lock:
            plan = self._plans.pop((shape, outputs), None)
            if plan is None:
                model = self.model.clone()
                model.reshape({model.inputs[0]: list(shape)})
                kept = [r for r in model.get_results() if r.output(0).get_names() & set(outputs)]
                try:
                    plan = _Plan(_core().compile_model(ov().Model(kept, model.get_parameters(), "flair-viz"), "CPU",
                                                       self.config))
                except Exception as exc:  # noqa: BLE001 - any compiler failure becomes one named condition
                    raise InvalidModel(f"OpenVINO could not compile {self.path.name} for input {list(shape)} "
                                       f"({str(exc)[:200]})", "use --engine onnx or --engine torch for this "
                                       "model") from None
            for other in self._plans.values():
                other.drop_idle()  # buffers are per request: only the plan in use keeps idle ones
            self._plans[(shape, outputs)] = plan  # most recently used last
            while len(self._plans) > SHAPES:
                self._plans.popitem(last=False)  # requests in use keep their plan alive until they finish
            return plan

    def shapes(self) -> list[tuple[int, ...]]:
        """Input shapes with a plan, least recently used first (for tests and benchmarks)."""
        with self._lock:
            return [shape for shape, _ in self._plans]

    def _infer(self, x: np.ndarray, names: tuple[str, ...]) -> list[np.ndarray]:
        x = np.ascontiguousarray(x, dtype=np.float32)
        plan = self._plan(tuple(x.shape), names)
        req = plan.request()
        try:
            req.infer({0: x})
            return [np.array(req.get_tensor(name).data, copy=True) for name in names]  # buffers are reused
        finally:
            plan.free.put(req)

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        return self._infer(batch, ("proba",))[0]

    __call__ = probabilities  # what agreement is measured on (onnxruntime's call gives logits: same argmax)

    def summaries(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(argmax model channel int32, top-1 − top-2 gap, entropy in nats), each (N, H, W), from the graph."""
        idx, gap, ent = self._infer(x, ("argmax", "gap", "entropy"))
        return idx, gap, ent

    def stats(self, batch: np.ndarray, channels: Channels) -> list[uncertainty.PixelStats]:
        """The graph's own summaries (top-2 and Σ p·log p after the softmax: the formulas of
        :func:`flair_viz.core.uncertainty.pixel_stats`, tested equal). Why: a live region then skips the
        copy of 76 bytes per pixel of probabilities and the numpy pass over them, about half its time on a
        CPU with fast bf16, and the plan without the probability output needs a third less memory."""
        return stats_from_summaries(*self.summaries(batch), channels)


class _Plan:
    """One compiled static-shape graph and the infer requests made from it (at most ``REQUESTS``)."""

    def __init__(self, compiled) -> None:
        self.compiled = compiled
        self.free: queue.LifoQueue = queue.LifoQueue()
        self._made = 0
        self._lock = threading.Lock()

    def drop_idle(self) -> None:
        """Forget the requests no thread is using (each holds the plan's buffers, hundreds of MB for a big
        chunk); a request in use comes back later and is kept until the next switch of plan."""
        while True:
            try:
                self.free.get_nowait()
            except queue.Empty:
                return
            with self._lock:
                self._made -= 1

    def request(self):
        try:
            return self.free.get_nowait()
        except queue.Empty:
            with self._lock:
                make = self._made < REQUESTS
                self._made += make
            return self.compiled.create_infer_request() if make else self.free.get()
