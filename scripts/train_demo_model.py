"""Train the demo models shipped in models/ (reproducible: fixed seed, CPU, deterministic, fixed steps).

Two recipes, one loop:

- ``full`` → ``demo-unet-r18-full``: a U-Net with a full-depth (5-stage) ResNet-18 encoder, 256 px crops, flips,
  90° rotations and colour jitter, class-weighted cross-entropy (rare classes count), a one-cycle learning-rate
  schedule, and a validation split taken from the training zones that picks the checkpoint. It learns from the
  three FLAIR-1 training zones of Hérault, Z4_UU, Z5_UA and Z2_AA (300 patches of D034_2021). It beats the small
  model on held-out patches of those zones, but not on the unseen demo zone Z6_NU (docs/benchmarks.md says why).
- ``small`` → ``demo-unet-r18``, the first demo model (3 stages, 128 px crops, 300 steps), fast, and the default:
  on Z6_NU it scores no worse. With two models, Model A vs B, disagreement ranking and model comparison work out
  of the box.

Neither ever sees zone Z6_NU (shipped in data/demo/flair1/) nor the 4 FLAIR-2 demo patches: the demo's scores
are on unseen patches. They are still DEMO models trained from scratch on a CPU, not benchmarks. Train on an
otherwise idle machine: on the 2-core VM a ``full`` step takes about 2 s alone, and 5-12 s beside other work.

    .venv/bin/python scripts/train_demo_model.py [DATA] [--recipe full|small]
        # DATA: a FLAIR tree holding D034_2021/<zones>; default ../shared/data/flair1-d034 (not in the repo)
Writes models/<id>.{safetensors,toml}, each atomically. Afterwards, ``scripts/make_demo_predictions.py``
predicts the demo patches with each model and writes each card's [scores] on Z6_NU.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from flair_viz.core import atomic, config, raster  # noqa: E402
from flair_viz.core.catalog import scan_flair_folder  # noqa: E402
from flair_viz.metrics.scores import scores  # noqa: E402

BANDS = ["R", "G", "B", "NIR", "elevation"]
MEAN = [105.08, 110.87, 101.82, 106.38, 53.26]  # FLAIR normalisation (docs in ../shared/design.md)
STD = [52.17, 45.38, 44.00, 39.69, 79.30]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "flair1-d034"
HELD_OUT = "Z6_NU"  # the demo zone: never trained on
N_CLASSES = 19


@dataclass(frozen=True)
class Recipe:
    """Everything that decides the weights: re-running a recipe on the same data reproduces the file."""

    model_id: str
    title: str
    encoder_depth: int
    decoder_channels: tuple[int, ...]
    zones: tuple[str, ...]
    steps: int
    crop: int
    batch: int
    max_lr: float
    weighted_loss: bool  # class weights ~ 1/sqrt(frequency): rare classes are not ignored
    colour_jitter: bool  # random brightness, per-band gain and offset on R, G, B, NIR (see jitter())
    val_every: int  # 0: no validation split, the last step is kept
    default: bool = False  # the card says `default = true`: every page and script offers this model first
    threads: int = 2  # torch threads; fixed, because the thread count changes float summation order
    store_dtype: str = "float32"  # float16 halves the file (≤ 25 MB) at no measurable cost in predicted classes
    arch: str = "Unet"
    encoder: str = "tu-resnet18"


RECIPES = {
    "full": Recipe(
        model_id="demo-unet-r18-full",
        title="DEMO U-Net ResNet-18 (full depth), trained on Hérault zones Z4_UU + Z5_UA + Z2_AA "
              "(better on its zones' held-out patches, not on Z6_NU)",
        encoder_depth=5, decoder_channels=(96, 48, 32, 16, 16), zones=("Z4_UU", "Z5_UA", "Z2_AA"),
        steps=1200, crop=256, batch=8, max_lr=2e-3, weighted_loss=True, colour_jitter=True, val_every=100,
        store_dtype="float16"),
    "small": Recipe(
        model_id="demo-unet-r18",
        title="DEMO small U-Net ResNet-18 (3 stages, fast and weak), trained on Hérault zones Z4_UU + Z5_UA",
        encoder_depth=3, decoder_channels=(64, 32, 16), zones=("Z4_UU", "Z5_UA"),
        steps=300, crop=128, batch=16, max_lr=3e-3, weighted_loss=False, colour_jitter=False, val_every=0,
        # The default: on the demo zone Z6_NU it scores no worse than the full model (card [scores]) and is faster.
        default=True),
}


def load_zones(data: Path, zones: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Images (N, 5, 512, 512) uint8 and masks (N, 512, 512) 0-based of the given zones, via the catalog scan.

    Kept as uint8 (390 MB for 300 patches, not 1.5 GB of float32); crops are normalised per batch.
    """
    if HELD_OUT in zones:
        raise SystemExit(f"{HELD_OUT} is the demo's unseen zone; do not train on it")
    found = [d for d in scan_flair_folder(data) if d.zone in zones]
    images = sorted((d for d in found if d.role == "image"), key=lambda d: d.id)
    truths = {d.patch: d for d in found if d.role == "truth"}
    if not images:
        raise SystemExit(f"no FLAIR patches of zones {', '.join(zones)} under {data}: give the folder as DATA")
    xs, ys, ids = [], [], []
    for img in images:
        if img.patch not in truths or len(img.bands) != 5:
            continue
        xs.append(raster.read(img.path))
        ys.append(raster.read(truths[img.patch].path, 1).astype(np.int64) - 1)
        ids.append(img.id)
    return np.stack(xs), np.stack(ys), ids


def normalise(x: np.ndarray) -> np.ndarray:
    return (x.astype(np.float32) - np.array(MEAN, np.float32)[:, None, None]) / np.array(STD, np.float32)[:, None, None]


def split(ids: list[str], every: int) -> tuple[np.ndarray, np.ndarray]:
    """Every 10th patch (by ID) of the training zones is the validation split that picks the checkpoint.

    Spread over all three zones and every landscape in them; Z6_NU stays out of both halves."""
    idx = np.arange(len(ids))
    if not every:
        return idx, idx[:0]
    val = idx[5::10]
    return np.setdiff1d(idx, val), val


def class_weights(y: np.ndarray) -> torch.Tensor:
    """1/sqrt(pixel frequency), mean 1 over the present classes, capped at 10: rare classes still pull.

    Plain cross-entropy let the first demo model ignore everything but the 3-4 big classes."""
    counts = np.bincount(y[y >= 0].ravel(), minlength=N_CLASSES).astype(np.float64)
    w = np.zeros(N_CLASSES)
    present = counts > 0
    w[present] = 1 / np.sqrt(counts[present] / counts.sum())
    w[present] /= w[present].mean()
    return torch.tensor(np.minimum(w, 10.0), dtype=torch.float32)


def batch_of(x_all: np.ndarray, y_all: np.ndarray, pool: np.ndarray, rng: np.random.Generator, recipe: Recipe
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """A random batch of crops with a random flip and 90° rotation each (aerial images have no 'up')."""
    c, b = recipe.crop, recipe.batch
    idx = pool[rng.integers(0, len(pool), b)]
    r = rng.integers(0, 512 - c + 1, b)
    q = rng.integers(0, 512 - c + 1, b)
    k = rng.integers(0, 4, b)
    flip = rng.integers(0, 2, b)
    xb = np.stack([np.rot90(x_all[i, :, a:a + c, e:e + c][:, :, ::-1] if f else x_all[i, :, a:a + c, e:e + c],
                            kk, axes=(1, 2)) for i, a, e, kk, f in zip(idx, r, q, k, flip)])
    yb = np.stack([np.rot90(y_all[i, a:a + c, e:e + c][:, ::-1] if f else y_all[i, a:a + c, e:e + c], kk)
                   for i, a, e, kk, f in zip(idx, r, q, k, flip)])
    x = jitter(xb, rng) if recipe.colour_jitter else np.ascontiguousarray(xb)
    return torch.from_numpy(normalise(x)), torch.from_numpy(np.ascontiguousarray(yb))


def jitter(xb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brightness (x0.78..1.28), per-band gain (x0.92..1.08) and offset (±12) on R, G, B, NIR; elevation kept.

    Another flight, season or sun makes another zone's forest brighter: the first full-depth run, without this,
    scored OA 0.76 on its validation patches but called most of the unseen zone's deciduous forest coniferous or
    brushwood (its pixels were ~10 levels brighter in R, G, B than the training zones' forest)."""
    b = len(xb)
    gain = np.exp(rng.uniform(-0.25, 0.25, (b, 1, 1, 1))) * np.exp(rng.uniform(-0.08, 0.08, (b, 4, 1, 1)))
    offset = rng.uniform(-12, 12, (b, 4, 1, 1))
    x = xb.astype(np.float32)
    x[:, :4] = np.clip(x[:, :4] * gain + offset, 0, 255)
    return x


def miou_flair1(model: torch.nn.Module, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """mIoU (FLAIR-1 protocol: classes > 13 → other, nanmean over the first 12) and OA on whole patches."""
    cm = np.zeros((N_CLASSES, N_CLASSES), np.int64)
    model.eval()
    with torch.inference_mode():
        for i in range(0, len(x), 4):
            pred = model(torch.from_numpy(normalise(x[i:i + 4]))).argmax(1).numpy()
            t = y[i:i + 4]
            ok = t >= 0
            cm += np.bincount(t[ok] * N_CLASSES + pred[ok], minlength=N_CLASSES ** 2).reshape(N_CLASSES, N_CLASSES)
    model.train()
    sc = scores(cm, "flair1")  # the library's FLAIR-1 protocol, as the Metrics page and the cards count it
    return float(sc.miou), float(sc.oa)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="?", default=str(DEFAULT_DATA))
    ap.add_argument("--recipe", choices=sorted(RECIPES), default="full")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, help="override the recipe's fixed number of optimiser steps (tests)")
    ap.add_argument("--machine", default="", help="recorded in the card, e.g. 'the 2-core CI VM'")
    ap.add_argument("--out", default=str(config.MODELS_DIR))
    args = ap.parse_args()
    recipe = RECIPES[args.recipe]
    steps = args.steps or recipe.steps

    import segmentation_models_pytorch as smp
    from safetensors.torch import save_file

    torch.set_num_threads(recipe.threads)  # thread count changes float summation order: fixed per recipe
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    rng = np.random.default_rng(args.seed)

    t0 = time.time()
    x_all, y_all, ids = load_zones(Path(args.data), recipe.zones)
    train, val = split(ids, recipe.val_every)
    n = len(ids)
    print(f"loaded {n} patches of {', '.join(recipe.zones)}: {len(train)} train, {len(val)} validation "
          f"({time.time() - t0:.0f} s)", flush=True)
    model = smp.create_model(recipe.arch, encoder_name=recipe.encoder, encoder_weights=None, in_channels=5,
                             classes=N_CLASSES, encoder_depth=recipe.encoder_depth,
                             decoder_channels=recipe.decoder_channels)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.max_lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.max_lr, total_steps=steps)
    weights = class_weights(y_all[train]) if recipe.weighted_loss else None
    loss_fn = torch.nn.CrossEntropyLoss(weight=weights, ignore_index=-1)
    model.train()
    loss_val, best, best_step, best_state = float("nan"), (-1.0, 0.0), steps, None
    for step in range(steps):
        xb, yb = batch_of(x_all, y_all, train, rng, recipe)
        opt.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        sched.step()
        loss_val = loss.item()
        if step % 10 == 0 or step == steps - 1:
            print(f"step {step + 1}/{steps} loss {loss_val:.4f} ({time.time() - t0:.0f} s)", flush=True)
        done = step + 1
        if len(val) and (done % recipe.val_every == 0 or done == steps) and done >= steps // 2:
            miou, oa = miou_flair1(model, x_all[val], y_all[val])
            print(f"  validation at step {done}: mIoU {miou:.4f} OA {oa:.4f}", flush=True)
            if miou > best[0]:
                best, best_step = (miou, oa), done
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if best_state is not None:
        model.load_state_dict(best_state)
    seconds = time.time() - t0

    out = Path(args.out)
    weights_path = out / f"{recipe.model_id}.safetensors"
    dtype = getattr(torch, recipe.store_dtype)
    tensors = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
    with atomic.atomic_path(weights_path) as tmp:
        save_file(tensors, str(tmp),
                  # one key: safetensors writes its metadata map in arbitrary order, which would change the bytes
                  metadata={"flair_viz": f"{recipe.model_id} seed={args.seed} train_zones={','.join(recipe.zones)}"})
    digest = hashlib.sha256(weights_path.read_bytes()).hexdigest()
    n_params = sum(v.numel() for v in model.state_dict().values())
    command = f"python scripts/train_demo_model.py ../shared/data/flair1-d034 --recipe {args.recipe} --seed {args.seed}"
    if args.steps:
        command += f" --steps {steps}"
    machine = args.machine or f"{platform.machine()}, {os.cpu_count()} CPUs"
    val_line = (f"validation_miou_flair1 = {best[0]:.4f}\nvalidation_oa = {best[1]:.4f}\n"
                f"validation_patch_count = {len(val)}\nkept_step = {best_step}\n") if len(val) else ""
    zones = recipe.zones
    picked = f" ({len(val)} more of them picked the checkpoint)" if len(val) else ""
    card = f'''# Demo model card. Written by scripts/train_demo_model.py; do not edit by hand, re-run the script.
id = "{recipe.model_id}"
title = {json.dumps(recipe.title, ensure_ascii=False)}
arch = "{recipe.arch}"
encoder = "{recipe.encoder}"
in_bands = {json.dumps(BANDS)}
mean = {json.dumps(MEAN)}
std = {json.dumps(STD)}
classes = {N_CLASSES}
nomenclature = "flair1"
checkpoint = "{weights_path.name}"
sha256 = "{digest}"
licence = "Apache-2.0 (weights); trained on IGN FLAIR data, Licence Ouverte / Etalab 2.0"
demo = true
default = {str(recipe.default).lower()}
description = """DEMO model, not a benchmark: {steps} CPU steps by scripts/train_demo_model.py --recipe {args.recipe}.
Trained on {len(train)} real FLAIR-1 patches of D034_2021 (Hérault), zones {' + '.join(zones)}{picked}.
It never saw zone {HELD_OUT} (the demo zone in data/demo/flair1/) nor the 4 FLAIR-2 demo patches (other
départements): its scores on those, in [scores], are on unseen patches."""
provenance = "Trained from scratch (encoder_weights=None) on CPU by scripts/train_demo_model.py in this repository."

[arch_params]
encoder_depth = {recipe.encoder_depth}
decoder_channels = {json.dumps(list(recipe.decoder_channels))}

[training]
command = "{command}"
recipe = "{args.recipe}"
seed = {args.seed}
steps = {steps}
threads = {recipe.threads}
crop_px = {recipe.crop}
colour_jitter = {str(recipe.colour_jitter).lower()}
batch = {recipe.batch}
max_lr = {recipe.max_lr}
class_weighted_loss = {str(recipe.weighted_loss).lower()}
stored_dtype = "{recipe.store_dtype}"
parameters = {n_params}
torch = "{torch.__version__}"
train_zones = {json.dumps(list(zones))}
train_patch_count = {len(train)}
held_out_zone = "{HELD_OUT}"
final_loss = {loss_val:.4f}
{val_line}seconds = {seconds:.0f}
machine = {json.dumps(machine, ensure_ascii=False)}
'''
    atomic.write_text(out / f"{recipe.model_id}.toml", card)
    print(f"wrote {weights_path} ({weights_path.stat().st_size / 1e6:.1f} MB, sha256 {digest[:12]}…) in "
          f"{seconds:.0f} s; validation mIoU {best[0]:.3f} (training zones, not Z6_NU)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
