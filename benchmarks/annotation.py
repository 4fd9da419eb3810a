"""Annotation speed goals, measured side by side in one run.

1. Scoring a scene: ``flair_viz.annotate.score_cells`` (strip by strip, one bincount per component)
   against a plain per-cell loop (the obvious implementation), with equal results, and against the
   demo model's own prediction time for the same pixels. Goal: scoring costs < 10 % of predicting.
2. Re-ranking when a weight slider moves: ``combine`` + ``pick`` over many cells. Goal: <= 100 ms for
   16,000 cells (1,000 FLAIR patches on the 128 px sub-grid), with and without the spacing rule.
3. One selection change (an atomic rewrite of the whole GeoPackage). Goal: <= 250 ms with 1,000 selections.

Run: ``.venv/bin/python benchmarks/annotation.py [--size 2048]``
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

import numpy as np
import rasterio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

from flair_viz import annotate as A  # noqa: E402
from flair_viz.annotate import selections as S  # noqa: E402

X0, Y0 = 961436.8, 6329262.4


def timed(fn, repeat: int = 3) -> tuple[float, object]:
    return _common.timed(fn, repeat)


def synthetic_proba(size: int, k: int = 19, seed: int = 0) -> np.ndarray:
    """uint8 probabilities 0..255 shaped like a model's: one dominant class per 32 px block, plus noise."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1, (k, size // 32, size // 32)).astype(np.float32) * 3
    logits = np.repeat(np.repeat(logits, 32, axis=1), 32, axis=2) + rng.normal(0, 0.7, (k, size, size)).astype(np.float32)
    e = np.exp(logits - logits.max(axis=0))
    return np.round(e / e.sum(axis=0) * 255).astype(np.uint8)


def naive_cells(proba: np.ndarray, cell_px: int) -> dict[tuple[int, int], tuple[float, float]]:
    """The obvious reference: per cell, float64 normalise, entropy and top-2 margin over the whole block."""
    k, h, w = proba.shape
    out = {}
    for r in range(math.ceil(h / cell_px)):
        for c in range(math.ceil(w / cell_px)):
            p = proba[:, r * cell_px:(r + 1) * cell_px, c * cell_px:(c + 1) * cell_px].astype(np.float64)
            p = p / p.sum(axis=0)
            with np.errstate(divide="ignore", invalid="ignore"):
                ent = -np.nansum(p * np.log(p), axis=0) / np.log(k)
            s = np.sort(p, axis=0)
            out[(r, c)] = (float(ent.mean()), float(1 - (s[-1] - s[-2]).mean()))
    return out


def bench_scoring(size: int) -> None:
    proba = synthetic_proba(size)
    transform = rasterio.Affine(0.2, 0, X0, 0, -0.2, Y0)
    mpx = size * size / 1e6
    print(f"scoring a {size}x{size} scene ({mpx:.1f} Mpx, 19 uint8 probability bands), FLAIR grid and 128 px sub-grid")
    t_ours, cells = timed(lambda: A.score_cells(proba, transform, cell_m=A.FLAIR_CELL_M))
    t_fine, _ = timed(lambda: A.score_cells(proba, transform, cell_m=25.6))
    t_naive, ref = timed(lambda: naive_cells(proba, 512), repeat=1)
    worst = max(max(abs(row.entropy - ref[(row.row, row.col)][0]), abs(row.margin - ref[(row.row, row.col)][1]))
                for row in cells.itertuples())
    print(f"  flair_viz score_cells (512 px)   : {t_ours:7.3f} s  {mpx / t_ours:6.1f} Mpx/s (median of 3)")
    print(f"  flair_viz score_cells (128 px)   : {t_fine:7.3f} s  {mpx / t_fine:6.1f} Mpx/s")
    print(f"  naive per-cell float64 loop      : {t_naive:7.3f} s  -> ratio {t_naive / t_ours:.1f}x, max |diff| {worst:.1e}")
    try:
        import torch

        from flair_viz.predict import inference, models

        torch.set_num_threads(2)
        loaded = models.load_model("demo-unet-r18")
        img = np.random.default_rng(1).integers(0, 255, (5, 512, 512), dtype=np.uint8)
        inference.predict_proba_array(loaded, img)  # warm-up
        t_pred, _ = timed(lambda: inference.predict_proba_array(loaded, img))
        per_mpx_pred = t_pred / (512 * 512 / 1e6)
        per_mpx_score = t_ours / mpx
        print(f"  demo model prediction (1 patch)  : {t_pred:7.3f} s  {1 / per_mpx_pred:6.1f} Mpx/s -> scoring costs "
              f"{100 * per_mpx_score / per_mpx_pred:.1f} % of predicting")
    except Exception as exc:  # the model is optional for this benchmark
        print(f"  demo model prediction skipped: {exc}")


def bench_rank(n_patches: int = 1000) -> None:
    rng = np.random.default_rng(2)
    side = int(math.ceil(math.sqrt(n_patches))) * 4
    rows, cols = np.divmod(np.arange(side * side), side)
    import geopandas as gpd
    import pandas as pd
    import shapely

    n = n_patches * 16
    rows, cols = rows[:n], cols[:n]
    df = pd.DataFrame({"cell_id": [f"c{i}" for i in range(n)], "dataset": "S", "row": rows, "col": cols,
                       "cell_m": 25.6, "valid_px": 16384, "coverage": 1.0,
                       "entropy": rng.random(n), "margin": rng.random(n), "gt": rng.random(n), "models": np.nan})
    for i, col in enumerate(A.COUNT_COLS):
        df[col] = rng.integers(0, 16384 // (i + 1), n)
    geoms = shapely.box(X0 + cols * 25.6, Y0 - (rows + 1) * 25.6, X0 + (cols + 1) * 25.6, Y0 - rows * 25.6)
    cells = gpd.GeoDataFrame(df, geometry=geoms, crs="EPSG:2154")
    w = {"entropy": 1, "margin": 0.5, "gt": 2, "models": 1, "rare": 1}
    t_rank, _ = timed(lambda: A.rank(cells, w, top=50), repeat=5)
    t_space, picked = timed(lambda: A.rank(cells, w, top=50, spacing_m=500), repeat=5)
    print(f"re-ranking {n:,} cells ({n_patches:,} FLAIR patches on the 128 px sub-grid), top 50")
    print(f"  combine + pick                    : {1000 * t_rank:7.1f} ms (median of 5)")
    print(f"  with a 500 m spacing rule         : {1000 * t_space:7.1f} ms ({len(picked)} picked)")


def bench_store(n: int = 1000) -> None:
    import geopandas as gpd
    import shapely

    with tempfile.TemporaryDirectory() as tmp:
        store = S.SelectionStore(Path(tmp) / "sel.gpkg")
        base = gpd.GeoDataFrame({"id": [f"r{i}" for i in range(n)], "source": "candidate", "note": "x" * 40},
                                geometry=[shapely.box(X0 + 102.4 * i, Y0, X0 + 102.4 * (i + 1), Y0 + 102.4) for i in range(n)],
                                crs="EPSG:2154")
        S.write_file(base, store.path)
        t_edit, _ = timed(lambda: store.edit({"r1": {"status": "done"}}), repeat=5)
        t_load, _ = timed(store.load, repeat=5)
        t_exp, _ = timed(lambda: store.export(Path(tmp) / "e.geojson"), repeat=3)
    print(f"selection store with {n:,} regions (atomic whole-layer rewrite under a lock)")
    print(f"  one edit (load + rewrite + rename): {1000 * t_edit:7.1f} ms (median of 5)")
    print(f"  load                              : {1000 * t_load:7.1f} ms")
    print(f"  export GeoJSON                    : {1000 * t_exp:7.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=2048, help="scene side in pixels for the scoring benchmark")
    args = ap.parse_args()
    bench_scoring(args.size)
    bench_rank()
    bench_store()


if __name__ == "__main__":
    main()
