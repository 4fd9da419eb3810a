"""Train the small demo model shipped in models/ (reproducible: fixed seed, CPU, deterministic, fixed steps).

It learns from two real FLAIR-1 zones of Hérault, Z4_UU and Z5_UA (200 patches of D034_2021), and never sees
zone Z6_NU (shipped in data/demo/flair1/) nor the 4 FLAIR-2 demo patches: the demo's predictions and metrics are
therefore on unseen patches. It is still a DEMO (a few minutes of CPU training), not a benchmark.

    .venv/bin/python scripts/train_demo_model.py [DATA]   # DATA: a FLAIR tree holding D034_2021/{Z4_UU,Z5_UA}
                                                         # default ../shared/data/flair1-d034 (not in the repo)
Writes models/demo-unet-r18.{safetensors,toml}, each atomically.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from flair_viz.core import atomic, config, raster  # noqa: E402
from flair_viz.core.catalog import scan_flair_folder  # noqa: E402

MODEL_ID = "demo-unet-r18"
ARCH, ENCODER = "Unet", "tu-resnet18"
ARCH_PARAMS = {"encoder_depth": 3, "decoder_channels": [64, 32, 16]}
BANDS = ["R", "G", "B", "NIR", "elevation"]
MEAN = [105.08, 110.87, 101.82, 106.38, 53.26]  # FLAIR normalisation (docs in ../shared/design.md)
STD = [52.17, 45.38, 44.00, 39.69, 79.30]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "flair1-d034"
TRAIN_ZONES = ("Z4_UU", "Z5_UA")
HELD_OUT = "Z6_NU"  # the demo zone: never trained on


def load_zones(data: Path, zones: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Images (N, 5, 512, 512) uint8 and masks (N, 512, 512) 0-based of the given zones, via the catalog scan.

    Kept as uint8 (260 MB for 200 patches, not 1 GB of float32); crops are normalised per batch.
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="?", default=str(DEFAULT_DATA))
    ap.add_argument("--zones", nargs="+", default=list(TRAIN_ZONES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=300, help="fixed number of optimiser steps (not epochs)")
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--out", default=str(config.MODELS_DIR))
    args = ap.parse_args()

    import segmentation_models_pytorch as smp
    from safetensors.torch import save_file

    torch.set_num_threads(2)  # thread count changes float summation order: fix it for reproducibility
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    rng = np.random.default_rng(args.seed)

    t0 = time.time()
    zones = tuple(args.zones)
    x_all, y_all, ids = load_zones(Path(args.data), zones)
    n = len(ids)
    print(f"loaded {n} patches of {', '.join(zones)} ({time.time() - t0:.0f} s)", flush=True)
    model = smp.create_model(ARCH, encoder_name=ENCODER, encoder_weights=None, in_channels=5, classes=19,
                             encoder_depth=ARCH_PARAMS["encoder_depth"],
                             decoder_channels=tuple(ARCH_PARAMS["decoder_channels"]))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=args.steps)
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=-1)
    c = args.crop
    model.train()
    loss_val = float("nan")
    for step in range(args.steps):
        idx = rng.integers(0, n, args.batch)
        r = rng.integers(0, 512 - c + 1, args.batch)
        q = rng.integers(0, 512 - c + 1, args.batch)
        k = rng.integers(0, 4, args.batch)
        flip = rng.integers(0, 2, args.batch)
        xb = np.stack([np.rot90(x_all[i, :, a:a + c, b:b + c][:, :, ::-1] if f else x_all[i, :, a:a + c, b:b + c],
                                kk, axes=(1, 2)) for i, a, b, kk, f in zip(idx, r, q, k, flip)])
        yb = np.stack([np.rot90(y_all[i, a:a + c, b:b + c][:, ::-1] if f else y_all[i, a:a + c, b:b + c], kk)
                       for i, a, b, kk, f in zip(idx, r, q, k, flip)])
        opt.zero_grad()
        loss = loss_fn(model(torch.from_numpy(normalise(np.ascontiguousarray(xb)))),
                       torch.from_numpy(np.ascontiguousarray(yb)))
        loss.backward()
        opt.step()
        sched.step()
        loss_val = loss.item()
        if step % 10 == 0 or step == args.steps - 1:
            print(f"step {step + 1}/{args.steps} loss {loss_val:.4f} ({time.time() - t0:.0f} s)", flush=True)

    model.eval()
    sample = np.linspace(0, n - 1, min(n, 8)).astype(int)  # a fixed few training patches: a sanity figure only
    with torch.inference_mode():
        pred = model(torch.from_numpy(normalise(x_all[sample]))).argmax(1).numpy()
    acc = float((pred == y_all[sample]).mean())
    out = Path(args.out)
    weights = out / f"{MODEL_ID}.safetensors"
    with atomic.atomic_path(weights) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp),
                  # one key: safetensors writes its metadata map in arbitrary order, which would change the bytes
                  metadata={"flair_viz": f"{MODEL_ID} seed={args.seed} train_zones={','.join(zones)}"})
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    command = (f"python scripts/train_demo_model.py ../shared/data/flair1-d034 --zones {' '.join(zones)} "
               f"--seed {args.seed} --steps {args.steps} --crop {args.crop} --batch {args.batch}")
    card = f'''# Demo model card. Written by scripts/train_demo_model.py; do not edit by hand, re-run the script.
id = "{MODEL_ID}"
title = "DEMO U-Net ResNet-18 (3 stages), trained on Hérault zones {' + '.join(zones)}"
arch = "{ARCH}"
encoder = "{ENCODER}"
in_bands = {BANDS!r}
mean = {MEAN!r}
std = {STD!r}
classes = 19
nomenclature = "flair1"
checkpoint = "{weights.name}"
sha256 = "{digest}"
licence = "Apache-2.0 (weights); trained on IGN FLAIR data, Licence Ouverte / Etalab 2.0"
demo = true
description = """DEMO model, not a benchmark: {args.steps} CPU steps by scripts/train_demo_model.py.
Trained on {n} real FLAIR-1 patches of D034_2021 (Hérault), zones {' and '.join(zones)}. It never saw zone
{HELD_OUT} (the demo zone in data/demo/flair1/) nor the 4 FLAIR-2 demo patches (other départements): scores
on those are on unseen patches, but they are the scores of a few minutes of training."""
provenance = "Trained from scratch (encoder_weights=None) on CPU by scripts/train_demo_model.py in this repository."

[arch_params]
encoder_depth = {ARCH_PARAMS["encoder_depth"]}
decoder_channels = {ARCH_PARAMS["decoder_channels"]!r}

[training]
command = "{command}"
seed = {args.seed}
steps = {args.steps}
crop_px = {c}
batch = {args.batch}
torch = "{torch.__version__}"
train_zones = {list(zones)!r}
train_patch_count = {n}
held_out_zone = "{HELD_OUT}"
final_loss = {loss_val:.4f}
train_pixel_accuracy_8_training_patches = {acc:.4f}
seconds = {time.time() - t0:.0f}
'''
    atomic.write_text(out / f"{MODEL_ID}.toml", card.replace("'", '"'))
    print(f"wrote {weights} ({weights.stat().st_size / 1e6:.1f} MB, sha256 {digest[:12]}…), pixel accuracy on "
          f"8 training patches {acc:.3f} (training data: not an evaluation)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
