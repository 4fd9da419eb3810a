"""Torch models from cards: device selection, building the smp network, loading its checkpoint once.

Cards (what a model is) live in :mod:`flair_viz.predict.cards`, which never imports torch; this
module imports torch and segmentation_models_pytorch only inside the functions that need them.
Networks are built with ``encoder_weights=None``: nothing is downloaded, ever, because the tool runs
offline and weights must be traceable.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

from flair_viz.core.errors import InvalidInput, InvalidModel, Misconfigured
from flair_viz.predict.cards import ModelCard, check_arch, get_card, resolve_checkpoint


def select_device(name: str | None = None):
    """cuda, then mps, then cpu, unless ``name`` (or ``$FLAIR_VIZ_DEVICE``) overrides it."""
    import torch

    name = name or os.environ.get("FLAIR_VIZ_DEVICE") or None
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
    import torch

    dev = select_device(device)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    if dev.type == "mps":
        return "Apple MPS"
    return "CPU"


@dataclass
class LoadedModel:
    """A network ready for inference, with what inference needs from its card."""

    card: ModelCard
    module: Any  # torch.nn.Module
    device: Any  # torch.device
    checksum: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.card.id, self.checksum, str(self.device))


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


_model_cache: dict[tuple[str, str, str], LoadedModel] = {}
_model_lock = threading.Lock()


def load_model(card: ModelCard | str, device: str | None = None) -> LoadedModel:
    """Build and load a model once per (card id, checksum, device); later calls reuse it."""
    from flair_viz.predict import checkpoints

    card = get_card(card) if isinstance(card, str) else card
    dev = select_device(device)
    path, digest = resolve_checkpoint(card)
    key = (card.id, digest, str(dev))
    with _model_lock:
        if key in _model_cache:
            return _model_cache[key]
        module = build_module(card)
        checkpoints.load_strict(module, checkpoints.read_state_dict(path, card.label), card.label)
        module.eval().to(dev)
        if dev.type == "cuda":
            import torch

            module = module.to(memory_format=torch.channels_last)
        loaded = LoadedModel(card=card, module=module, device=dev, checksum=digest)
        _model_cache[key] = loaded
        return loaded
