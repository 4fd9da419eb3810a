"""Metrics speed goals, measured side by side in one run.

1. Confusion over 100 M pixels: flair_viz.metrics.confusion (chunked np.bincount on 16-bit codes)
   against sklearn.metrics.confusion_matrix on the same arrays, with equal results. Goal: >= 20x.
2. Filtering and aggregating 10,000 stored per-patch matrices (domain + date range + model filter,
   sum, FLAIR-1 scores). Goal: <= 100 ms.

Run: ``.venv/bin/python benchmarks/metrics.py [--pixels 100000000]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

from flair_viz import metrics  # noqa: E402


def timed(fn, repeat: int = 1) -> tuple[float, object]:
    return _common.timed(fn, repeat)


def bench_confusion(n: int, with_torch: bool) -> None:
    from sklearn.metrics import confusion_matrix

    rng = np.random.default_rng(0)
    truth = rng.integers(1, 20, n, dtype=np.uint8)
    # a plausible prediction: 80 % right, the rest random, plus nodata and out-of-nomenclature values
    pred = np.where(rng.random(n, dtype=np.float32) < 0.8, truth, rng.integers(0, 22, n, dtype=np.uint8)).astype(np.uint8)
    truth[: n // 100] = 0
    print(f"confusion over {n:,} pixels (uint8, 1% nodata in truth, some values outside 1..19 in prediction)")
    t_np, (cm, ignored) = timed(lambda: metrics.confusion(truth, pred), repeat=3)
    print(f"  flair_viz numpy bincount : {t_np:8.3f} s  (median of 3)")
    if with_torch:
        import torch

        torch.set_num_threads(2)
        dev = "cuda" if torch.cuda.is_available() else "cpu"
        t_t, (cm_t, ign_t) = timed(lambda: metrics.confusion_torch(truth, pred, device=dev), repeat=3)
        assert np.array_equal(cm_t, cm) and ign_t == ignored
        print(f"  flair_viz torch ({dev:4s})   : {t_t:8.3f} s  (median of 3, equal result)")
    t_sk, ref = timed(lambda: confusion_matrix(truth, pred, labels=np.arange(1, 20)), repeat=1)
    equal = np.array_equal(ref.astype(np.int64), cm) and ignored == n - int(ref.sum())
    print(f"  sklearn confusion_matrix : {t_sk:8.3f} s  (1 run)")
    print(f"  equal results: {equal}; ignored pixels: {ignored:,}")
    ratio = t_sk / t_np
    print(f"  speed-up: {ratio:.1f}x  (goal >= 20x: {'MET' if ratio >= 20 and equal else 'NOT MET'})")
    if not equal:
        raise SystemExit("results differ")


def synthetic_table(n: int, rng: np.random.Generator) -> metrics.MetricsTable:
    domains = [f"D{d:03d}_{2019 + d % 3}" for d in range(1, 51)]
    dom = rng.choice(domains, n)
    meta = pd.DataFrame({
        "patch": [f"{i:06d}" for i in range(n)], "domain": dom, "zone": [f"Z{z}_UN" for z in rng.integers(1, 30, n)],
        "date": (pd.Timestamp("2019-03-01") + pd.to_timedelta(rng.integers(0, 1000, n), unit="D")).strftime("%Y-%m-%d"),
        "minx": 0.0, "miny": 0.0, "maxx": 102.4, "maxy": 102.4, "model": rng.choice(["unet-a", "unet-b"], n),
        "truth_id": "", "pred_id": "", "truth_path": [f"/t/{i}.tif" for i in range(n)], "truth_mtime_ns": 0,
        "truth_size": 0, "truth_nomenclature": "flair1", "pred_path": [f"/p/{i}.tif" for i in range(n)],
        "pred_mtime_ns": 0, "pred_size": 0, "pred_nomenclature": "flair1", "ignored": 0})
    mats = rng.integers(0, 2000, (n, 19, 19)).astype(np.int64)
    return metrics.MetricsTable(meta[list(metrics.META_COLUMNS)], mats)


def bench_aggregate(n: int) -> None:
    rng = np.random.default_rng(1)
    table = synthetic_table(n, rng)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "metrics.parquet"
        t_w, _ = timed(lambda: table.write(path))
        t_r, stored = timed(lambda: metrics.MetricsTable.read(path), repeat=3)
        size = path.stat().st_size
    assert np.array_equal(stored.matrices, table.matrices)
    doms = sorted(stored.meta.domain.unique())[:10]
    _ = stored.dates  # parsed once per loaded table, like the page does

    def query() -> metrics.Scores:
        mask = metrics.filter_mask(stored, domains=doms, date_range=("2020-01-01", "2021-06-30"), models=["unet-a"])
        return metrics.scores(stored.total(mask), "flair1")

    t_q, sc = timed(query, repeat=20)
    mask = ((stored.meta.domain.isin(doms)) & (stored.meta.model == "unet-a")
            & (pd.to_datetime(stored.meta.date) >= "2020-01-01") & (pd.to_datetime(stored.meta.date) <= "2021-06-30")).to_numpy()
    assert np.array_equal(sc.matrix, metrics.view(stored.matrices[mask].sum(axis=0), "flair1"))
    t_first, _ = timed(lambda: (metrics.MetricsTable(stored.meta, stored.matrices).dates, query()))
    print(f"\n{n:,} stored per-patch matrices ({size / 1e6:.1f} MB Parquet, 361 int64 count columns)")
    print(f"  write {t_w * 1000:.0f} ms · read {t_r * 1000:.0f} ms (median of 3)")
    print(f"  filter (10 domains + date range + model, {int(mask.sum())} rows) + sum + FLAIR-1 scores: "
          f"{t_q * 1000:.2f} ms (median of 20); {t_first * 1000:.2f} ms including date parsing")
    print(f"  goal <= 100 ms: {'MET' if t_first <= 0.1 else 'NOT MET'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pixels", type=int, default=100_000_000)
    ap.add_argument("--matrices", type=int, default=10_000)
    ap.add_argument("--no-torch", action="store_true", help="skip the torch bincount line")
    args = ap.parse_args()
    import os
    import platform

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU(s), numpy {np.__version__}")
    bench_confusion(args.pixels, with_torch=not args.no_torch)
    bench_aggregate(args.matrices)


if __name__ == "__main__":
    main()
