"""CPU engines side by side in one run: torch vs onnxruntime (fp32, int8) vs OpenVINO (fp32, bf16), then the viewport.

    .venv/bin/python benchmarks/engines.py [--repeats 2] [--batch-size 4] [--no-viewport]

1. Speed, full FLAIR U-Net ResNet34 (random weights, benchmarks/inference.py's card): 512 px windows per
   second through ``inference.Forward`` (normalised batch in, FLAIR-1 probabilities out) for each engine,
   on windows of the four real demo patches; the ratio to torch (goal: best CPU engine >= 2x).
2. Agreement with torch fp32 (argmax), on the same real patches: for the random-weight ResNet34 and for
   the trained demo model, with the change in mIoU against the patches' ground truth (FLAIR-1 classes
   present in the truth). int8 is calibrated on the first two patches (sorted by path); the agreement
   its build records (``engines.agreement_record``) is on the other two, and decides ``auto``; bf16 needs no
   calibration but records its held-out agreement the same way. The last line says what ``auto`` picks.
3. The viewport table (benchmarks/viewport.py): 12 z18 tiles cold, one region vs one by one.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

ENGINES = ("torch", "onnx", "onnx-int8", "openvino", "openvino-bf16")


def miou(truth: np.ndarray, pred: np.ndarray) -> float:
    """Mean IoU over the FLAIR-1 classes present in the truth (1..19; 0 and others ignored)."""
    ious = []
    for c in np.unique(truth):
        if not 1 <= c <= 19:
            continue
        t, p = truth == c, pred == c
        ious.append((t & p).sum() / (t | p).sum())
    return float(np.mean(ious))


def patches():
    """(image, truth) arrays of the demo FLAIR patches, in the order calibration uses them."""
    from flair_viz.core import classes, raster
    from flair_viz.predict import engines

    out = []
    for img in engines.calibration_images():
        msk = img.parent.parent / "msk" / img.name.replace("IMG_", "MSK_")
        truth = classes.to_flair1(raster.read(msk)[0], "flair1") if msk.exists() else None
        out.append((img.stem, raster.read(img), truth))
    return out


def engine_rows(model_id: str, data, repeats: int, batch_size: int) -> list[dict]:
    from flair_viz.predict import engines, inference, models

    rows = []
    ref = None
    for name in ENGINES:
        t0 = time.perf_counter()
        loaded = models.load_model(model_id, "cpu", name)
        build_s = time.perf_counter() - t0
        fwd = inference.Forward(loaded, batch_size)
        x = np.stack([inference.normalise(loaded.card, img) for _, img, _ in data])[:batch_size]
        fwd(x[:1])  # first-call costs
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fwd(x)
            times.append(time.perf_counter() - t)
        preds = [inference.classes_from_proba(inference.predict_proba_array(loaded, img)) for _, img, _ in data]
        if ref is None:
            ref = preds
        agree = np.mean([(a == b).mean() for a, b in zip(ref, preds)])
        have = [i for i, d in enumerate(data) if d[2] is not None]
        d_miou = np.mean([miou(data[i][2], preds[i]) - miou(data[i][2], ref[i]) for i in have]) if have else None
        record = engines.agreement_record(loaded.card, loaded.checksum, name) if name in engines.REDUCED else None
        rows.append({"engine": loaded.engine, "wps": len(x) / statistics.median(times), "build_s": build_s,
                     "agreement": float(agree), "d_miou": d_miou,
                     "held_out": record["agreement"] if record else None})
    for r in rows:
        r["ratio"] = r["wps"] / rows[0]["wps"]
    rows.append({"auto": engines.choose(loaded.card, loaded.checksum, "cpu"), "order": engines.auto_order()})
    return rows


def print_rows(title: str, rows: list[dict]) -> None:
    print(f"\n{title}")
    print("| engine | windows/s | vs torch | first load (export, quantise) | argmax = torch fp32 (4 patches) "
          "| held-out (int8 record) | Δ mIoU vs truth |")
    print("|---|---|---|---|---|---|---|")
    for r in rows[:-1]:
        held = f"{100 * r['held_out']:.2f} %" if r["held_out"] is not None else "—"
        dm = f"{100 * r['d_miou']:+.2f} pt" if r["d_miou"] is not None else "—"
        print(f"| {r['engine']} | {r['wps']:.2f} | {r['ratio']:.2f}× | {r['build_s']:.1f} s | "
              f"{100 * r['agreement']:.2f} % | {held} | {dm} |")
    print(f"auto picks {rows[-1]['auto']} (CPU order here: {', '.join(rows[-1]['order'])})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--no-viewport", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="flair-viz-engines-") as tmp:
        tmp = Path(tmp)
        import viewport

        model_id, ds = viewport.setup(tmp, "full")  # sets the model/cache folders, writes the full model
        import torch

        from flair_viz.predict import onnx_engine

        torch.set_num_threads(max(1, os.cpu_count() or 1))
        from flair_viz.predict import openvino_engine

        print(f"CPU threads {torch.get_num_threads()}, torch {torch.__version__}, onnxruntime "
              f"{onnx_engine.ort().__version__}, openvino {openvino_engine.version()} (native bf16: "
              f"{openvino_engine.bf16_native()}), load average {os.getloadavg()[0]:.1f}")
        data = patches()
        print_rows("Full U-Net ResNet34 (random weights), batch of 4 real 512 px windows",
                   engine_rows(model_id, data, args.repeats, args.batch_size))
        print_rows("Demo model demo-unet-r18 (trained), same windows",
                   engine_rows("demo-unet-r18", data, args.repeats, args.batch_size))
        if not args.no_viewport:
            print()
            viewport.report(viewport.run(model_id, ds, 4, 3, "auto"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
