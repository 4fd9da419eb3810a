"""The one interface every engine implements: :class:`Runner`, and the torch engine's runner.

Why: inference used to guess what it held (a torch module, a runner that gives logits, one that gives
probabilities, one that can also summarise pixels) by looking at attributes. Each engine now says the
same two things in the same words, so :class:`flair_viz.predict.inference.Forward` calls them and never
asks which engine it runs: torch here, onnx/onnx-int8 in :mod:`flair_viz.predict.onnx_engine`,
openvino/openvino-bf16 in :mod:`flair_viz.predict.openvino_engine`.

Outputs come in the *model's* channel order; :class:`Channels` lands them among FLAIR-1's 19 classes,
once, for every engine. torch is imported only inside :class:`TorchRunner`, so a CPU server that runs
a CPU runtime never imports it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from flair_viz.core import classes, uncertainty
from flair_viz.predict.cards import ModelCard

K = classes.N_CLASSES


class OutOfMemory(Exception):
    """A batch did not fit the device's memory: :class:`~flair_viz.predict.inference.Forward` halves its
    batch size and tries again. Raised by runners, never seen by users (torch's own error is not, so
    that inference can catch it without importing torch)."""


@dataclass(frozen=True)
class Channels:
    """Where a model's output channels land among FLAIR-1's 19 classes (other nomenclatures are mapped)."""

    values: np.ndarray  # FLAIR-1 value (1..19) of each model output channel

    @classmethod
    def of(cls, card: ModelCard) -> Channels:
        return cls(card.output_values())

    @property
    def classes(self) -> int:
        """The model's class count: entropy is normalised by its log (:mod:`flair_viz.core.uncertainty`)."""
        return len(self.values)

    @property
    def identity(self) -> bool:
        """The model's channels are FLAIR-1's, in order: nothing to map."""
        return self.classes == K and bool(np.array_equal(self.values, np.arange(1, K + 1)))

    def flair1(self, proba: np.ndarray) -> np.ndarray:
        """(N, model classes, H, W) probabilities as (N, 19, H, W), channel k = FLAIR-1 value k + 1."""
        if self.identity:
            return proba
        full = np.zeros((proba.shape[0], K, *proba.shape[2:]), dtype=proba.dtype)
        full[:, self.values.astype(np.int64) - 1] = proba
        return full

    def bands(self, channel: np.ndarray) -> np.ndarray:
        """FLAIR-1 band indexes (value − 1, int16) of model channel indexes."""
        return (self.values.astype(np.int16) - 1)[channel]


class Runner(Protocol):
    """One network on one engine, run on normalised float32 batches (N, C, H, W); thread-safe."""

    engine: str  # torch, onnx, onnx-int8, openvino or openvino-bf16 (flair_viz.predict.engines.ENGINES)

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """Softmax probabilities (N, model classes, H, W) float32, in the model's channel order; raises
        :class:`OutOfMemory` when the batch does not fit the device."""
        ...

    def stats(self, batch: np.ndarray, channels: Channels) -> list[uncertainty.PixelStats]:
        """Per-sample argmax (FLAIR-1 band index), entropy and margin: what a live region keeps. Engines
        that cannot summarise in their graph return :func:`stats_from_probabilities`."""
        ...


def stats_from_probabilities(runner: Runner, batch: np.ndarray, channels: Channels) -> list[uncertainty.PixelStats]:
    """The default :meth:`Runner.stats`: :func:`flair_viz.core.uncertainty.pixel_stats` of the FLAIR-1
    probabilities, so the live map scores pixels exactly as the annotation ranking does."""
    return [uncertainty.pixel_stats(p, channels.classes) for p in channels.flair1(runner.probabilities(batch))]


def stats_from_summaries(argmax: np.ndarray, gap: np.ndarray, entropy_nats: np.ndarray,
                         channels: Channels) -> list[uncertainty.PixelStats]:
    """PixelStats from an engine's own per-pixel summaries (model channel, top-1 − top-2 gap, entropy in
    nats, each (N, H, W)): the formulas of ``pixel_stats``, computed in the engine's graph."""
    band = channels.bands(argmax)
    ent = np.clip(entropy_nats / math.log(channels.classes), 0, 1)
    return [uncertainty.PixelStats(np.ones(b.shape, bool), e, g, b) for b, g, e in zip(band, gap, ent)]


class TorchRunner:
    """The torch engine: an ``nn.Module`` on its device (autocast and channels_last on CUDA).

    ``module`` stays reachable for what needs torch itself: measuring a CPU runtime's agreement with it,
    benchmarks that time the bare network."""

    engine = "torch"

    def __init__(self, module: Any, device: Any) -> None:
        self.module = module
        self.device = device
        self._cuda = getattr(device, "type", None) == "cuda"
        self.autocast_dtype = None  # CUDA only: bf16 where the GPU has it, else fp16
        if self._cuda:
            import torch

            self.autocast_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        import torch

        x = torch.from_numpy(np.ascontiguousarray(batch))
        try:
            with torch.inference_mode():
                if self._cuda:
                    x = x.pin_memory().to(self.device, non_blocking=True)
                    x = x.contiguous(memory_format=torch.channels_last)
                    with torch.autocast("cuda", dtype=self.autocast_dtype):
                        logits = self.module(x)
                else:
                    logits = self.module(x.to(self.device))
                return torch.softmax(logits.float(), dim=1).cpu().numpy()
        except torch.cuda.OutOfMemoryError:
            if self._cuda:
                torch.cuda.empty_cache()
            raise OutOfMemory from None

    def stats(self, batch: np.ndarray, channels: Channels) -> list[uncertainty.PixelStats]:
        return stats_from_probabilities(self, batch, channels)
