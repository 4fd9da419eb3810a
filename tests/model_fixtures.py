"""Small randomly initialised smp models and their cards, shared by the model/inference/tile tests.

Tests never download anything: the encoders are built with ``encoder_weights=None`` and saved in the
checkpoint formats IGN uses, so loading is exercised exactly as with real FLAIR weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

FLAIR_MEAN = [105.08, 110.87, 101.82, 106.38, 53.26]
FLAIR_STD = [52.17, 45.38, 44.00, 39.69, 79.30]
BANDS5 = ["R", "G", "B", "NIR", "elevation"]
ARCH_PARAMS = {"encoder_depth": 3, "decoder_channels": [16, 8, 8]}


def tiny_unet(classes: int = 19, in_channels: int = 5, seed: int = 0) -> torch.nn.Module:
    import segmentation_models_pytorch as smp

    torch.manual_seed(seed)
    m = smp.create_model("Unet", encoder_name="tu-resnet18", encoder_weights=None, in_channels=in_channels,
                         classes=classes, encoder_depth=3, decoder_channels=(16, 8, 8))
    # BatchNorm running stats of a fresh model are trivial; randomise them so loading them matters.
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.8, 1.2)
    return m.eval()


def save_checkpoint(module: torch.nn.Module, path: Path, fmt: str) -> Path:
    """Save like IGN does: ``lightning`` .ckpt, ``pth``, ``pth-wrapped`` or ``safetensors`` (FLAIR-HUB)."""
    sd = {k: v.clone().contiguous() for k, v in module.state_dict().items()}
    if fmt == "lightning":
        torch.save({"state_dict": {f"model.seg_model.{k}": v for k, v in sd.items()}, "epoch": 7,
                    "global_step": 1234}, path)
    elif fmt == "pth":
        torch.save(sd, path)
    elif fmt == "pth-wrapped":
        torch.save({"model": sd}, path)
    elif fmt == "safetensors":
        from safetensors.torch import save_file

        save_file({f"model.{k}": v for k, v in sd.items()}, str(path))
    else:
        raise ValueError(fmt)
    return path


def write_card(folder: Path, model_id: str, checkpoint: str, *, classes: int = 19, nomenclature: str = "flair1",
               in_bands: list[str] | None = None, extra: str = "", demo: bool = False,
               arch_params: dict | None = None) -> Path:
    bands = in_bands or BANDS5
    idx = [BANDS5.index(b) for b in bands]
    params = arch_params if arch_params is not None else ARCH_PARAMS
    lines = [f'id = "{model_id}"', 'arch = "Unet"', 'encoder = "tu-resnet18"',
             f"in_bands = {bands!r}".replace("'", '"'), f"mean = {[FLAIR_MEAN[i] for i in idx]!r}",
             f"std = {[FLAIR_STD[i] for i in idx]!r}", f"classes = {classes}", f'nomenclature = "{nomenclature}"',
             f'checkpoint = "{checkpoint}"', f"demo = {'true' if demo else 'false'}", 'licence = "test"', extra,
             "[arch_params]"] + [f"{k} = {v!r}" for k, v in params.items()]
    path = folder / f"{model_id}.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def make_model(folder: Path, model_id: str = "tiny", fmt: str = "safetensors", seed: int = 0,
               **card_kw) -> tuple[Path, torch.nn.Module]:
    """A tiny model saved in ``fmt`` plus its card in ``folder``; returns (card path, reference module)."""
    classes = card_kw.get("classes", 19)
    in_ch = len(card_kw.get("in_bands") or BANDS5)
    module = tiny_unet(classes, in_ch, seed)
    suffix = {"lightning": ".ckpt", "pth": ".pth", "pth-wrapped": ".pth", "safetensors": ".safetensors"}[fmt]
    save_checkpoint(module, folder / f"{model_id}{suffix}", fmt)
    return write_card(folder, model_id, f"{model_id}{suffix}", **card_kw), module


def direct_proba(module: torch.nn.Module, image: np.ndarray, mean: list[float], std: list[float]) -> np.ndarray:
    """Softmax of one plain forward of the normalised image: the reference the engine must reproduce."""
    x = (image.astype(np.float32) - np.array(mean, np.float32)[:, None, None]) / np.array(std, np.float32)[:, None, None]
    with torch.inference_mode():
        return torch.softmax(module(torch.from_numpy(x[None])), dim=1)[0].numpy()

