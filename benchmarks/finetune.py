"""Fine-tune on painted corrections: time for 1,000 and 10,000 corrected pixels, and apply → first new tile.

Models: the demo card (whatever ``models/demo-unet-r18.toml`` currently is) and the full FLAIR U-Net
ResNet34 (design.md; random weights, which time the same as trained ones). Corrections are square
polygons on the demo patch IMG_000473 (one 512 px window). "Apply → first tile" is the wall time from
starting the fine-tune to the first live prediction tile of the new model over the corrected place
(in process: fine-tune, then ``predict.live.prediction`` of the tile holding the correction). torch and
smp are imported first and timed apart: the page's ``flair-viz finetune`` subprocess pays that once per apply.

    .venv/bin/python benchmarks/finetune.py [--epochs 20] [--device cpu] [--models demo,r34]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PATCH = "IMG_000473"


def r34_card(folder: Path) -> str:
    """A random-weight FLAIR U-Net ResNet34 card + safetensors checkpoint in ``folder``."""
    import segmentation_models_pytorch as smp
    from safetensors.torch import save_file

    m = smp.create_model("Unet", encoder_name="resnet34", encoder_weights=None, in_channels=5, classes=19)
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(folder / "bench-r34.safetensors"))
    (folder / "bench-r34.toml").write_text(
        'id = "bench-r34"\narch = "Unet"\nencoder = "resnet34"\nin_bands = ["R", "G", "B", "NIR", "elevation"]\n'
        "mean = [105.08, 110.87, 101.82, 106.38, 53.26]\nstd = [52.17, 45.38, 44.0, 39.69, 79.3]\n"
        'classes = 19\nnomenclature = "flair1"\ncheckpoint = "bench-r34.safetensors"\ndemo = true\n')
    return "bench-r34"


def run(model_id: str, pixels: int, epochs: int, device: str | None, work: Path) -> dict:
    import shapely
    from morecantile import tms

    from flair_viz.core import raster
    from flair_viz.core.catalog import default_catalog
    from flair_viz.correct import store, training
    from flair_viz.predict import live

    cat = default_catalog()
    ds = cat.get(PATCH)
    info = raster.describe(ds.path)
    side = math.sqrt(pixels) * 0.2
    x0, y1 = info.bounds[0] + 30, info.bounds[3] - 30
    geom = shapely.box(x0, y1 - side, x0 + side, y1)
    s = store.CorrectionStore(work / f"corr-{model_id}-{pixels}.gpkg")
    s.add(geom, 10, dataset_id=PATCH)
    out_id = f"{model_id}-bench-{pixels}-{int(time.time())}"
    t0 = time.perf_counter()
    res = training.finetune(model_id, s.path, out_id, cat, training.Settings(epochs=epochs, device=device),
                            models_dir=work / "models")
    t_ft = time.perf_counter() - t0
    cx, cy = geom.centroid.coords[0]
    from pyproj import Transformer

    lon, lat = Transformer.from_crs(info.crs, "EPSG:4326", always_xy=True).transform(cx, cy)
    tile = tms.get("WebMercatorQuad").tile(lon, lat, 19)
    live.prediction(ds, out_id, tile.z, tile.x, tile.y)
    t_tile = time.perf_counter() - t0
    return {"model": model_id, "pixels": res.pixels, "epochs": epochs, "device": res.device,
            "finetune_s": round(t_ft, 2), "apply_to_first_tile_s": round(t_tile, 2),
            "right_before": res.right_before, "right_after": res.right_after}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--device", default=None)
    ap.add_argument("--models", default="demo,r34")
    args = ap.parse_args()
    t0 = time.perf_counter()
    import segmentation_models_pytorch  # noqa: F401 - what a fresh `flair-viz finetune` process pays first
    import torch  # noqa: F401

    print(json.dumps({"import_torch_smp_s": round(time.perf_counter() - t0, 2)}), flush=True)
    # the `auto` engine's background int8 build would compete for the CPU and write into the temp folder
    os.environ.setdefault("FLAIR_VIZ_INT8_BUILD", "0")
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        work = Path(tmp)
        os.environ.setdefault("FLAIR_VIZ_DATA", str(work / "data"))
        os.environ["FLAIR_VIZ_MODELS"] = os.pathsep.join([str(work), str(work / "models")])
        (work / "models").mkdir()
        ids = {"demo": "demo-unet-r18", "r34": None}
        for name in args.models.split(","):
            model_id = ids[name] or r34_card(work)
            for pixels in (1_000, 10_000):
                print(json.dumps(run(model_id, pixels, args.epochs, args.device, work)), flush=True)


if __name__ == "__main__":
    main()
