"""The short version of ``benchmarks/load.py``: 4 clients x 40 tiles on a real server, on loopback.

Every requested tile overlaps the demo data, so every answer must be a 200 PNG; the four kinds
(aerial, ground truth, live prediction, change) are mixed. Memory must stay bounded: the server
starts without torch (fast start), so the first prediction tile alone adds ~0.65 GB of torch/timm
libraries and the demo model; the bound below leaves room for that plus the batches in flight.
"""

from __future__ import annotations

import json
import subprocess
import sys

import morecantile
import rasterio
from rasterio.warp import transform as warp_transform

from flair_viz.core.catalog import Catalog
from tests.conftest import DEMO_CATALOG, REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import load  # noqa: E402

MAX_GROWTH_MB = 2500


def test_tile_plan_only_holds_tiles_over_the_data():
    """Independent check at z17 (a tile is larger than a 102 m patch): each planned tile holds a point of the patch."""
    cat = Catalog.load(DEMO_CATALOG)
    plan = load.tile_plan(cat, [17])
    assert set(plan) == set(load.KINDS) and all(plan.values())
    tms = morecantile.tms.get("WebMercatorQuad")
    for path in plan["aerial"]:
        ds_id = path.split("/")[2]
        z, x, y = (int(v) for v in path.split("/tiles/WebMercatorQuad/")[1].split(".png")[0].split("/"))
        with rasterio.open(cat.get(ds_id).path) as ds:
            fx = [ds.bounds.left + f * (ds.bounds.right - ds.bounds.left) for f in (0.05, 0.5, 0.95)]
            fy = [ds.bounds.bottom + f * (ds.bounds.top - ds.bounds.bottom) for f in (0.05, 0.5, 0.95)]
            lons, lats = warp_transform(ds.crs, "EPSG:4326", [a for a in fx for _ in fy], [b for _ in fx for b in fy])
        assert (x, y) in {(t.x, t.y) for t in (tms.tile(lon, lat, z) for lon, lat in zip(lons, lats))}, path
    for kind in ("truth", "prediction", "change"):
        assert len(plan[kind]) == len(plan["aerial"])


def test_short_load_has_no_errors_and_bounded_memory(tmp_path):
    out = tmp_path / "load.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "load.py"), "--clients", "4", "--requests", "40",
                           "--json", str(out), "--max-seconds", "240"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["requests"] == 4 * 40 and res["ok"] == 4 * 40 and res["errors"] == 0, res["error_samples"]
    assert res["per_kind_ok"] == {k: 40 for k in load.KINDS}  # each client sends the four kinds in turn
    assert res["p50_ms"] <= res["p95_ms"] <= res["p99_ms"] and res["tiles_per_s"] > 0
    assert res["rss_start_mb"] > 0 and res["rss_peak_mb"] >= res["rss_end_mb"]
    assert res["rss_peak_mb"] - res["rss_start_mb"] < MAX_GROWTH_MB, res
