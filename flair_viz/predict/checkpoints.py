"""Read the checkpoint formats IGN's FLAIR models ship in, and load them strictly.

FLAIR weights circulate as Lightning ``.ckpt`` files (keys under ``model.seg_model.``), plain ``.pth``
state dicts (sometimes wrapped in ``{"state_dict": ...}`` or ``{"model": ...}``) and FLAIR-HUB
safetensors (keys under ``model.``). We strip those known prefixes and then demand an exact match:
a silently half-loaded network predicts plausible-looking garbage, which is worse than an error.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import torch

from flair_viz.core.errors import InvalidModel, first_line

# Longest first, so ``model.seg_model.`` wins over ``model.``.
KNOWN_PREFIXES: tuple[str, ...] = ("model.seg_model.", "seg_model.", "module.", "model.", "net.")
WRAPPER_KEYS: tuple[str, ...] = ("state_dict", "model_state_dict", "model", "net")
MAX_LISTED = 8


def _listing(items: list[str]) -> str:
    """A readable list that stays short when a whole network mismatches."""
    shown = ", ".join(items[:MAX_LISTED])
    more = len(items) - MAX_LISTED
    return shown + (f" … and {more} more" if more > 0 else "")


def read_state_dict(path: str | os.PathLike[str], label: str = "") -> dict[str, torch.Tensor]:
    """Read a checkpoint file into a flat ``{name: tensor}`` dict, unwrapping Lightning/trainer wrappers.

    Only tensors are accepted (``weights_only=True``): a checkpoint is data, never code to run.
    """
    path = Path(path)
    who = f"{label}: " if label else ""
    if not path.exists():
        raise InvalidModel(f"{who}checkpoint file not found: {path}",
                           "put the weights next to the card, or fix `checkpoint` in the card")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: object = load_file(str(path), device="cpu")
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as exc:
        first = first_line(exc, 200)
        raise InvalidModel(f"{who}cannot read checkpoint {path.name}: {first}",
                           "the file may be truncated or not a PyTorch/safetensors checkpoint; "
                           "re-download or re-export it (torch.save(model.state_dict(), ...))") from None
    for _ in range(3):  # e.g. {"state_dict": {"model": {...}}} seen in some trainers
        if isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
            inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, dict) or not obj:
        raise InvalidModel(f"{who}checkpoint {path.name} holds no state dict",
                           "save the weights with torch.save(model.state_dict(), path) or as safetensors")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise InvalidModel(f"{who}checkpoint {path.name} holds no tensors (keys: {_listing(sorted(map(str, obj)))})",
                           "save the weights with torch.save(model.state_dict(), path) or as safetensors")
    return tensors


def strip_prefixes(state: dict[str, torch.Tensor], expected: set[str]) -> dict[str, torch.Tensor]:
    """Remove wrapper prefixes (``model.seg_model.``, ``model.``, ``module.``…) from keys the model does not know."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name = key
        while name not in expected:
            prefix = next((p for p in KNOWN_PREFIXES if name.startswith(p)), None)
            if prefix is None:
                break
            name = name[len(prefix):]
        out[name] = value
    return out


def load_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], label: str) -> None:
    """Load ``state`` into ``module`` only if every key and shape matches, else list what differs."""
    own = module.state_dict()
    state = strip_prefixes(state, set(own))
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(f"{k} (checkpoint {tuple(state[k].shape)}, model {tuple(own[k].shape)})"
                    for k in set(own) & set(state) if tuple(state[k].shape) != tuple(own[k].shape))
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_listing(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {_listing(unexpected)}")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatch(es): {_listing(shapes)}")
    if problems:
        raise InvalidModel(f"{label}: the checkpoint does not match the architecture: " + "; ".join(problems),
                           "check arch, encoder, in_bands, classes and arch_params in the card against how the "
                           "weights were trained")
    module.load_state_dict(state, strict=True)
