"""Torch models from cards: device selection, building the smp network, loading its checkpoint once.

Cards (what a model is) live in :mod:`flair_viz.predict.cards`, which never imports torch; this
module imports torch and segmentation_models_pytorch only inside the functions that need them.
Networks are built with ``encoder_weights=None``: nothing is downloaded, ever, because the tool runs
offline and weights must be traceable.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from flair_viz.core import config
from flair_viz.core.errors import InvalidInput, InvalidModel, Misconfigured
from flair_viz.predict.cards import ModelCard, check_arch, get_card, resolve_checkpoint
from flair_viz.predict.runner import Runner, TorchRunner


@dataclass(frozen=True)
class CpuDevice:
    """The CPU, named without importing torch: what an ONNX model served torch-free runs on."""

    type: str = "cpu"

    def __str__(self) -> str:
        return "cpu"


def cpu_only(name: str | None = None) -> bool:
    """Whether the device is surely the CPU, decided without importing torch.

    Asked for (``cpu``, or ``$FLAIR_VIZ_DEVICE=cpu``), or nothing asked and no CUDA driver on this
    machine (no ``libcuda``, no ``/dev/nvidiactl``, not macOS, where MPS may exist): torch could not
    see a GPU either.
    """
    name = name or config.settings().device
    if name:
        return name == "cpu"
    return _no_gpu_driver()


@lru_cache(maxsize=1)
def _no_gpu_driver() -> bool:
    """Looked up once per process: ``find_library`` runs gcc and ld in subprocesses (about 8 ms), and
    every live tile request loads its model, so an uncached check cost a 12-tile viewport ~0.1 s."""
    import ctypes.util
    import sys

    return sys.platform != "darwin" and not os.path.exists("/dev/nvidiactl") and ctypes.util.find_library("cuda") is None


def select_device(name: str | None = None):
    """cuda, then mps, then cpu, unless ``name`` (or ``$FLAIR_VIZ_DEVICE``) overrides it."""
    import torch

    name = name or config.settings().device
    if name:
        try:
            dev = torch.device(name)
        except RuntimeError:
            raise InvalidInput(f"Unknown device {name!r}", "use cpu, cuda, cuda:N or mps") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise Misconfigured(f"Device {name!r} was asked for but CUDA is not available here",
                                "use --device cpu, or run on a machine with an NVIDIA GPU and a CUDA build of torch")
        if dev.type == "mps" and not torch.backends.mps.is_available():
            raise Misconfigured(f"Device {name!r} was asked for but MPS is not available here", "use --device cpu")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def device_name(device: str | None = None) -> str:
    """What the sidebar shows: the GPU's name, "Apple MPS", or "CPU"."""
    if cpu_only(device):
        return "CPU"
    import torch

    dev = select_device(device)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    if dev.type == "mps":
        return "Apple MPS"
    return "CPU"


def warm_up() -> None:
    """Import what the first live tile needs, in the background at server start: onnxruntime and
    OpenVINO for the CPU engines (torch is then never imported), else torch."""
    from flair_viz.predict import engines

    if cpu_only() and engines.requested() != "torch" and engines.auto_order():
        return
    device_name()


@dataclass
class LoadedModel:
    """A network ready for inference: its card, and the one runner of its engine that runs it."""

    card: ModelCard
    runner: Runner  # torch, onnxruntime or OpenVINO, behind one interface (flair_viz.predict.runner)
    device: Any  # torch.device, or CpuDevice where torch is not imported
    checksum: str

    @property
    def engine(self) -> str:
        """torch, onnx, onnx-int8, openvino or openvino-bf16 (:mod:`flair_viz.predict.engines`)."""
        return self.runner.engine

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.card.id, self.checksum, str(self.device), self.engine)

    @property
    def results_tag(self) -> str:
        """The checksum prefix in cache paths, plus the engine when not torch: engines never share cached results."""
        return self.checksum[:16] + ("" if self.engine == "torch" else f".{self.engine}")


def build_module(card: ModelCard):
    """The card's smp network with random weights; encoder_weights=None so nothing is ever downloaded."""
    import segmentation_models_pytorch as smp

    check_arch(card)

    params = {k: tuple(v) if isinstance(v, list) else v for k, v in card.arch_params.items()}
    try:
        return smp.create_model(card.arch, encoder_name=card.encoder, encoder_weights=None,
                                in_channels=len(card.in_bands), classes=card.classes, **params)
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise InvalidModel(f"{card.label}: cannot build {card.arch} with encoder {card.encoder}: {exc}",
                           "check arch, encoder and arch_params against segmentation_models_pytorch 0.6") from None


_model_cache: dict[tuple[str, str, str, str], LoadedModel] = {}
_model_lock = threading.Lock()
_build_locks: dict[tuple[str, str, str, str], threading.Lock] = {}  # one ONNX build at a time per model


def load_model(card: ModelCard | str, device: str | None = None, engine: str | None = None) -> LoadedModel:
    """Build and load a model once per (card id, checksum, device, engine); later calls reuse it.

    ``engine`` is torch, onnx, onnx-int8, openvino, openvino-bf16 or auto (default: ``$FLAIR_VIZ_ENGINE``, else auto), see
    :mod:`flair_viz.predict.engines`; the CPU engines export (and quantise) on first use, cached on disk.
    """
    from flair_viz.predict import engines

    card = get_card(card) if isinstance(card, str) else card
    path, digest = resolve_checkpoint(card)
    asked = engines.requested(engine)
    if cpu_only(device):  # decided without torch: an ONNX engine then never imports it
        dev: Any = CpuDevice()
        chosen = engines.choose(card, digest, "cpu", asked)
        key = (card.id, digest, "cpu", chosen)
        if chosen != "torch":
            with _model_lock:
                if key in _model_cache:
                    return _model_cache[key]
                build_lock = _build_locks.setdefault(key, threading.Lock())
            with build_lock:  # a child build takes seconds: other models (and cached ones) do not wait for it
                with _model_lock:
                    if key in _model_cache:
                        return _model_cache[key]
                runner = engines.torch_free_runner(card, digest, chosen, asked)  # None: build with torch below
                if runner is not None:
                    loaded = LoadedModel(card=card, runner=runner, device=dev, checksum=digest)
                    with _model_lock:
                        if asked == engines.AUTO:
                            _drop_superseded(key)
                        _model_cache[key] = loaded
            if runner is not None:
                if asked == engines.AUTO and chosen in engines.CPU_EXACT:
                    _build_reduced_later(card, digest, device)
                return loaded
    from flair_viz.predict import checkpoints  # imports torch

    dev = select_device(device)
    chosen = engines.choose(card, digest, dev.type, asked)
    key = (card.id, digest, str(dev), chosen)
    with _model_lock:
        if key in _model_cache:
            return _model_cache[key]
        module = build_module(card)
        checkpoints.load_strict(module, checkpoints.read_state_dict(path, card.label), card.label)
        module.eval().to(dev)
        used, runner = engines.attach(card, module, digest, chosen, asked)
        if runner is None:  # torch runs it (asked, or auto fell back); a CPU runtime's runner does not keep the
            # module, which only served to export its graph and measure its agreement
            if dev.type == "cuda":
                import torch

                module = module.to(memory_format=torch.channels_last)
            runner = TorchRunner(module, dev)
        loaded = LoadedModel(card=card, runner=runner, device=dev, checksum=digest)
        _model_cache[key] = loaded
    if asked == engines.AUTO and used in engines.CPU_EXACT:
        _build_reduced_later(card, digest, device)
    return loaded


def build_cpu_engine(card_path: str, engine: str) -> None:
    """The export child's job (:func:`flair_viz.predict.onnx_engine.build_elsewhere`): build and cache the
    engine's graph with torch. Nothing is returned: the parent opens the cached graph itself."""
    load_model(card_path, "cpu", engine)


def prepare_cpu_engines(budget_s: float = 90.0, say: Callable[[str], None] = print) -> list[str]:
    """Export the graph each model card will run from on this CPU, before a tile server serves anything;
    the IDs of the cards it exported.

    Why: the one-off export runs in a child process that imports torch (~1.1 GB RSS). Done lazily, at a
    model's first live tile, it ran beside a serving process and took a first start's peak RSS to
    ~1.9 GB; done before the server binds, the two never overlap. Only missing graphs are built, and none
    is started ``budget_s`` after the first began: those are built on first use, as before. A card that
    cannot be prepared is skipped with a warning; its tiles then name the problem.
    """
    import time
    import warnings

    from flair_viz.core.errors import FlairVizError
    from flair_viz.predict import cards, engines, onnx_engine

    if not cpu_only() or engines.requested() == "torch" or onnx_engine.build_here():
        return []
    built, start = [], time.monotonic()
    for card in cards.list_cards():
        if time.monotonic() - start > budget_s:
            break
        try:
            _, digest = resolve_checkpoint(card)
            engine = engines.choose(card, digest, "cpu")
            if engine == "torch" or engines.graph_path(card, digest, engine).exists():
                continue
            say(f"Preparing the {engine} engine of {card.id} (a one-off export, a few seconds)...")
            onnx_engine.build_elsewhere(card, engine)
            built.append(card.id)
        except FlairVizError as exc:
            warnings.warn(f"{card.id} was not prepared ({exc.problem}); its first live tile will say why",
                          stacklevel=2)
    return built


_auto_keys: set[tuple[str, str, str, str]] = set()  # cache keys that auto chose (torch-free CPU path)


def _drop_superseded(key: tuple[str, str, str, str]) -> None:
    """Forget the engine ``auto`` chose before for this checkpoint (fp32, before a faster reduced build
    qualified): a tile server would otherwise keep both compiled networks and their buffers. Call with
    ``_model_lock`` held."""
    for old in [k for k in _auto_keys if k[:3] == key[:3] and k != key]:
        _model_cache.pop(old, None)
        _auto_keys.discard(old)
    _auto_keys.add(key)


reduced_builds: dict[tuple[str, str], threading.Thread] = {}  # (card id, checksum) -> background build


def _build_reduced_later(card: ModelCard, checksum: str, device: str | None) -> None:
    """Build the faster reduced-precision engines (bf16, int8) and their agreement records in the
    background, once per checkpoint, fastest first, stopping at the first that qualifies; nothing when
    none is wanted (:func:`engines.reduced_wanted`: measured already, or ``FLAIR_VIZ_INT8_BUILD=0``).

    ``auto`` then switches to it for this card on later loads if its record shows >= 98 % agreement
    with torch, so users get the fastest engine that keeps torch's classes without knowing about it.
    """
    import warnings

    from flair_viz.predict import engines

    def build() -> None:
        for engine in engines.reduced_wanted(card, key[1]):
            try:
                load_model(card, device, engine)
            except Exception as exc:  # noqa: BLE001 - a background build never breaks serving; fp32 stays
                warnings.warn(f"{engine} build of {card.id} failed, auto keeps fp32: {exc}", stacklevel=1)
                continue
            if engines.choose(card, key[1], "cpu") == engine:
                return

    with _model_lock:
        key = (card.id, checksum)
        if key in reduced_builds or not engines.reduced_wanted(card, key[1]):
            return
        reduced_builds[key] = threading.Thread(target=build, name=f"reduced-build-{card.id}", daemon=True)
        reduced_builds[key].start()
