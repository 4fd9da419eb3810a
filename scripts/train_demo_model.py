"""Train the small demo model shipped in models/ (reproducible: fixed seed, CPU, deterministic, ~4 min on 2 cores).

It learns from the 4 demo FLAIR patches, which are also the patches the demo evaluates on, so its
scores say nothing about real accuracy: it exists so the app can show live predictions offline.

    .venv/bin/python scripts/train_demo_model.py            # writes models/demo-unet-r18.{safetensors,toml}
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
from flair_viz.core.catalog import Catalog  # noqa: E402

MODEL_ID = "demo-unet-r18"
ARCH, ENCODER = "Unet", "tu-resnet18"
ARCH_PARAMS = {"encoder_depth": 3, "decoder_channels": [64, 32, 16]}
BANDS = ["R", "G", "B", "NIR", "elevation"]
MEAN = [105.08, 110.87, 101.82, 106.38, 53.26]  # FLAIR normalisation (docs in ../shared/design.md)
STD = [52.17, 45.38, 44.00, 39.69, 79.30]


def load_patches() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The demo images (N, 5, 512, 512) float32 normalised and masks (N, 512, 512) 0-based, via the catalog."""
    cat = Catalog.load(config.DEMO_CATALOG)
    xs, ys, ids = [], [], []
    for img in sorted(cat.by_role("image"), key=lambda d: d.id):
        truth = cat.truth_of(img)
        if truth is None or len(img.bands) != 5:
            continue
        x = raster.read(img.path).astype(np.float32)
        xs.append((x - np.array(MEAN, np.float32)[:, None, None]) / np.array(STD, np.float32)[:, None, None])
        ys.append(raster.read(truth.path, 1).astype(np.int64) - 1)
        ids.append(img.id)
    return np.stack(xs), np.stack(ys), ids


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=30, help="one epoch = 8 random crops from each patch")
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

    x_all, y_all, ids = load_patches()
    n = len(ids)
    model = smp.create_model(ARCH, encoder_name=ENCODER, encoder_weights=None, in_channels=5, classes=19,
                             encoder_depth=ARCH_PARAMS["encoder_depth"],
                             decoder_channels=tuple(ARCH_PARAMS["decoder_channels"]))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    steps_per_epoch = max(1, (8 * n) // args.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=args.epochs * steps_per_epoch)
    loss_fn = torch.nn.CrossEntropyLoss()
    c = args.crop
    t0 = time.time()
    model.train()
    loss_val = float("nan")
    for epoch in range(args.epochs):
        for _ in range(steps_per_epoch):
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
            loss = loss_fn(model(torch.from_numpy(np.ascontiguousarray(xb))), torch.from_numpy(np.ascontiguousarray(yb)))
            loss.backward()
            opt.step()
            sched.step()
            loss_val = loss.item()
        if epoch % 10 == 0 or epoch == args.epochs - 1:
            print(f"epoch {epoch + 1}/{args.epochs} loss {loss_val:.4f} ({time.time() - t0:.0f} s)", flush=True)

    model.eval()
    with torch.inference_mode():
        pred = model(torch.from_numpy(x_all)).argmax(1).numpy()
    acc = float((pred == y_all).mean())
    out = Path(args.out)
    weights = out / f"{MODEL_ID}.safetensors"
    with atomic.atomic_path(weights) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp),
                  metadata={"model": MODEL_ID, "seed": str(args.seed)})
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    command = (f"python scripts/train_demo_model.py --seed {args.seed} --epochs {args.epochs} "
               f"--crop {args.crop} --batch {args.batch}")
    card = f'''# Demo model card. Written by scripts/train_demo_model.py; do not edit by hand, re-run the script.
id = "{MODEL_ID}"
title = "DEMO U-Net ResNet-18 (3 stages), 4 patches, not for evaluation"
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
description = """demo model trained on 4 patches by scripts/train_demo_model.py; not for evaluation.
It was trained on the 4 demo FLAIR patches ({", ".join(ids)}), which are ALSO the patches the demo
evaluates on: any metric computed on them measures memorisation, not accuracy."""
provenance = "Trained from scratch (encoder_weights=None) on CPU by scripts/train_demo_model.py in this repository."

[arch_params]
encoder_depth = {ARCH_PARAMS["encoder_depth"]}
decoder_channels = {ARCH_PARAMS["decoder_channels"]!r}

[training]
command = "{command}"
seed = {args.seed}
epochs = {args.epochs}
steps = {args.epochs * steps_per_epoch}
crop_px = {c}
batch = {args.batch}
torch = "{torch.__version__}"
train_patches = {ids!r}
final_loss = {loss_val:.4f}
train_pixel_accuracy_same_patches = {acc:.4f}
seconds = {time.time() - t0:.0f}
'''
    atomic.write_text(out / f"{MODEL_ID}.toml", card.replace("'", '"'))
    print(f"wrote {weights} ({weights.stat().st_size / 1e6:.1f} MB, sha256 {digest[:12]}…), training-patch "
          f"pixel accuracy {acc:.3f} (same patches: not an evaluation)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
