"""Metrics: confusion counts, scores, store, filters, CLI, confusion tiles and the Metrics page.

Every expected value is computed independently here: counts with ``np.add.at`` (not bincount),
scores from those counts with plain formulas, or by hand on tiny arrays.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine

from flair_viz import metrics
from flair_viz.core.catalog import Catalog
from flair_viz.core.errors import AlignmentError, FlairVizError
from tests.helpers import DEMO, REPO, app_client, centre_tile, decode_png, tile_to_raster

DEMO_FLAIR = DEMO / "flair"
MODELS = ("unet-a", "unet-b")
EXPECTED_DATES = {"000473": "2021-07-09", "084558": "2020-05-16", "034217": "2019-08-26", "050549": "2020-06-23"}


def np_confusion(t: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, int]:
    """Independent count: np.add.at over the pixels where both values are FLAIR-1 classes."""
    t, p = t.ravel().astype(np.int64), p.ravel().astype(np.int64)
    ok = (t >= 1) & (t <= 19) & (p >= 1) & (p <= 19)
    cm = np.zeros((19, 19), np.int64)
    np.add.at(cm, (t[ok] - 1, p[ok] - 1), 1)
    return cm, int((~ok).sum())


def plain_iou(cm: np.ndarray) -> np.ndarray:
    out = []
    for i in range(cm.shape[0]):
        tp, fp, fn = cm[i, i], cm[:, i].sum() - cm[i, i], cm[i, :].sum() - cm[i, i]
        out.append(tp / (tp + fp + fn) if tp + fp + fn else np.nan)
    return np.array(out)


def merge_flair1(cm19: np.ndarray) -> np.ndarray:
    """FLAIR-1 protocol by index arithmetic: classes 13..19 (index 12..18) summed into index 12."""
    idx = np.minimum(np.arange(19), 12)
    out = np.zeros((13, 13), np.int64)
    for i in range(19):
        for j in range(19):
            out[idx[i], idx[j]] += cm19[i, j]
    return out


def perturb(a: np.ndarray, seed: int, rate: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    b = a.copy()
    m = rng.random(a.shape) < rate
    b[m] = rng.integers(1, 20, m.sum())
    b[:3, :7] = 0  # nodata
    b[-2:, -5:] = 25  # outside the nomenclature
    return b


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """A catalog over a copy of the 4 demo patches with two models' predictions (perturbed real masks)."""
    root = tmp_path_factory.mktemp("metrics-demo")
    shutil.copytree(DEMO_FLAIR, root / "flair")
    (root / "preds").mkdir()
    lines = ['data_root = "."', "[[scan]]", 'path = "flair"', 'metadata = "flair/flair_metadata.json"']
    for k, model in enumerate(MODELS):
        (root / "folders" / model).mkdir(parents=True)
        for f in sorted((root / "flair").glob("*/*/msk/MSK_*.tif")):
            pid = f.stem[4:]
            with rasterio.open(f) as src:
                a, prof = src.read(1), src.profile
            out = root / "preds" / f"PRED_{pid}_{model}.tif"
            with rasterio.open(out, "w", **prof) as dst:
                dst.write(perturb(a, k * 1000 + int(pid), 0.3 - 0.15 * k), 1)
            shutil.copy(out, root / "folders" / model / f"PRED_{pid}.tif")
            lines += ["[[dataset]]", f'id = "PRED_{pid}_{model}"', f'path = "preds/{out.name}"', 'role = "prediction"',
                      f'patch = "{pid}"', f'title = "Prediction {model}"', "[dataset.extra]", f'model = "{model}"']
    (root / "catalog.toml").write_text("\n".join(lines) + "\n")
    return root


def read1(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


def expected_total(demo: Path, model: str, patches: list[str]) -> np.ndarray:
    total = np.zeros((19, 19), np.int64)
    for pid in patches:
        truth = next((demo / "flair").glob(f"*/*/msk/MSK_{pid}.tif"))
        total += np_confusion(read1(truth), read1(demo / "preds" / f"PRED_{pid}_{model}.tif"))[0]
    return total


# -- counting -----------------------------------------------------------------------------------
def test_confusion_equals_independent_count_on_real_demo_masks():
    truth = read1(next(DEMO_FLAIR.glob("*/*/msk/MSK_050549.tif")))
    pred = perturb(truth, 7, 0.25)
    cm, ignored = metrics.confusion(truth, pred)
    ref, ref_ignored = np_confusion(truth, pred)
    assert cm.dtype == np.int64 and cm.shape == (19, 19)
    np.testing.assert_array_equal(cm, ref)
    assert ignored == ref_ignored > 0
    assert cm.sum() + ignored == truth.size


def test_torch_path_counts_the_same():
    import torch

    torch.set_num_threads(1)
    rng = np.random.default_rng(3)
    t, p = rng.integers(0, 30, (64, 80), dtype=np.uint8), rng.integers(0, 30, (64, 80), dtype=np.uint8)
    cm, ignored = metrics.confusion_torch(t, p, device="cuda" if torch.cuda.is_available() else "cpu")
    ref, ref_ignored = np_confusion(t, p)
    np.testing.assert_array_equal(cm, ref)
    assert ignored == ref_ignored


def test_flairhub_predictions_are_converted_before_counting(tmp_path):
    from flair_viz.core import classes

    truth = read1(next(DEMO_FLAIR.glob("*/*/msk/MSK_084558.tif")))
    hub = classes.flair1_to_flairhub_lut()[truth]  # same classes, FLAIR-HUB numbering
    cm, ignored = metrics.confusion(truth, classes.to_flair1(hub, "flairhub"))
    np.testing.assert_array_equal(cm, np.diag(np.bincount(truth.ravel(), minlength=20)[1:]))
    assert ignored == 0


# -- scores -------------------------------------------------------------------------------------
def test_hand_made_iou_miou_f1_full_view():
    truth = np.array([[1, 1, 2], [2, 3, 0]], np.uint8)
    pred = np.array([[1, 2, 2], [2, 3, 3]], np.uint8)
    cm, ignored = metrics.confusion(truth, pred)
    assert ignored == 1
    sc = metrics.scores(cm, "full")
    # class 1: tp 1, fn 1 -> IoU 1/2; class 2: tp 2, fp 1 -> 2/3; class 3: tp 1 -> 1
    assert sc.iou[0] == pytest.approx(1 / 2) and sc.iou[1] == pytest.approx(2 / 3) and sc.iou[2] == pytest.approx(1.0)
    assert np.isnan(sc.iou[3:]).all()
    assert sc.miou == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    assert sc.oa == pytest.approx(4 / 5)
    assert sc.f1[0] == pytest.approx(2 / 3) and sc.precision[1] == pytest.approx(2 / 3) and sc.recall[0] == pytest.approx(1 / 2)
    assert len(sc.undefined_in_miou) == 16 and "water" in sc.undefined_in_miou


def test_hand_made_flair1_protocol_merges_other_and_averages_first_12():
    truth = np.array([1, 14, 16, 13], np.uint8)
    pred = np.array([1, 16, 16, 1], np.uint8)
    cm, _ = metrics.confusion(truth, pred)
    f1 = metrics.scores(cm, "flair1")
    # protocol: (1,1), (other,other) x2, (other,1): class 1 IoU 1/2, other IoU 2/3 (not in mIoU)
    assert f1.names[-1] == "other" and len(f1.names) == 13
    assert f1.iou[0] == pytest.approx(1 / 2) and f1.iou[12] == pytest.approx(2 / 3)
    assert f1.miou == pytest.approx(1 / 2)
    assert f1.oa == pytest.approx(3 / 4)
    full = metrics.scores(cm, "full")
    # full: 1: 1/2, 13: 0, 14: 0, 16: 1/2
    assert full.miou == pytest.approx((1 / 2 + 0 + 0 + 1 / 2) / 4)
    assert full.oa == pytest.approx(2 / 4)


def test_protocol_view_matches_index_arithmetic():
    rng = np.random.default_rng(5)
    cm = rng.integers(0, 1000, (19, 19))
    np.testing.assert_array_equal(metrics.view(cm, "flair1"), merge_flair1(cm))
    np.testing.assert_array_equal(metrics.view(cm, "full"), cm)


def test_normalisation_rows_and_columns():
    cm = np.array([[3, 1], [0, 0]])
    rec = metrics.normalise(cm, "recall")
    assert rec[0].tolist() == [0.75, 0.25] and np.isnan(rec[1]).all()
    prec = metrics.normalise(cm, "precision")
    assert prec[:, 0].tolist() == [1.0, 0.0] and prec[:, 1].tolist() == [1.0, 0.0]


# -- store, incremental, filters ------------------------------------------------------------------
def test_catalog_pairs_stored_equal_independent_counts_and_metadata(demo, tmp_path):
    cat = Catalog.load(demo / "catalog.toml")
    pairs = metrics.catalog_pairs(cat)
    assert len(pairs) == 8 and {p.model for p in pairs} == set(MODELS)
    store = tmp_path / "m.parquet"
    run = metrics.evaluate(pairs, store)
    assert (run.computed, run.reused) == (8, 0)
    back = metrics.MetricsTable.read(store)
    assert len(back) == 8
    for i, row in back.meta.iterrows():
        ref, ref_ignored = np_confusion(read1(Path(row.truth_path)), read1(Path(row.pred_path)))
        np.testing.assert_array_equal(back.matrices[i], ref)
        assert row.ignored == ref_ignored
        assert row.date == EXPECTED_DATES[row.patch]
        with rasterio.open(row.truth_path) as src:
            assert (row.minx, row.miny, row.maxx, row.maxy) == pytest.approx(tuple(src.bounds))
        assert row.truth_id == f"MSK_{row.patch}" and row.pred_id == f"PRED_{row.patch}_{row.model}"
        assert row.truth_size == Path(row.truth_path).stat().st_size


def test_incremental_skips_unchanged_and_recomputes_a_changed_file(demo, tmp_path):
    pairs = metrics.folder_pairs(demo / "flair", demo / "folders" / "unet-a")
    folder = tmp_path / "preds"
    shutil.copytree(demo / "folders" / "unet-a", folder)
    pairs = metrics.folder_pairs(demo / "flair", folder, model="m")
    store = tmp_path / "m.parquet"
    assert metrics.evaluate(pairs, store).computed == 4
    again = metrics.evaluate(pairs, store)
    assert (again.computed, again.reused) == (0, 4)
    changed = folder / "PRED_034217.tif"
    with rasterio.open(changed) as src:
        a, prof = src.read(1), src.profile
    a[:100, :] = 5
    changed.unlink()
    with rasterio.open(changed, "w", **prof) as dst:
        dst.write(a, 1)
    third = metrics.evaluate(pairs, store)
    assert (third.computed, third.reused) == (1, 3)
    row = int(np.flatnonzero(third.table.meta.patch == "034217")[0])
    truth = read1(next((demo / "flair").glob("*/*/msk/MSK_034217.tif")))
    np.testing.assert_array_equal(third.table.matrices[row], np_confusion(truth, a)[0])
    assert len(metrics.MetricsTable.read(store)) == 4  # replaced, not appended


def test_filters_equal_recomputing_on_the_filtered_patches(demo, tmp_path):
    run = metrics.evaluate(metrics.catalog_pairs(Catalog.load(demo / "catalog.toml")), tmp_path / "m.parquet")
    table = run.table
    mask = metrics.filter_mask(table, domains=["D004_2021"], models=["unet-a"])
    np.testing.assert_array_equal(table.total(mask), expected_total(demo, "unet-a", ["000473"]))
    mask = metrics.filter_mask(table, date_range=("2020-01-01", "2020-12-31"), models=["unet-b"])
    exp = expected_total(demo, "unet-b", ["084558", "050549"])
    np.testing.assert_array_equal(table.total(mask), exp)
    sc = metrics.scores(table.total(mask), "flair1")
    np.testing.assert_allclose(sc.iou, plain_iou(merge_flair1(exp)), equal_nan=True)
    assert sc.miou == pytest.approx(np.nanmean(plain_iou(merge_flair1(exp))[:12]))
    mask = metrics.filter_mask(table, zones=["Z3_UN", "Z15_UN"], patches=["050549"], models=["unet-a"])
    np.testing.assert_array_equal(table.total(mask), expected_total(demo, "unet-a", ["050549"]))


def test_compare_models_and_rank_patches(demo, tmp_path):
    table = metrics.evaluate(metrics.catalog_pairs(Catalog.load(demo / "catalog.toml")), tmp_path / "m.parquet").table
    drop_one = ~((table.meta.model == "unet-b") & (table.meta.patch == "000473")).to_numpy()
    delta, a, b, common = metrics.compare_models(table, "unet-a", "unet-b", "full", drop_one)
    assert common == sorted(["084558", "034217", "050549"])  # only patches both models predicted
    ia = plain_iou(expected_total(demo, "unet-a", common))
    ib = plain_iou(expected_total(demo, "unet-b", common))
    np.testing.assert_allclose(delta["iou_delta"].to_numpy(dtype=float), ib - ia, equal_nan=True)

    sel = metrics.filter_mask(table, models=["unet-a"])
    c1, c2 = 8, 6  # brushwood predicted as coniferous
    ranked = metrics.rank_patches(table, c1, c2, "full", sel)
    counts = {pid: int(expected_total(demo, "unet-a", [pid])[c1 - 1, c2 - 1]) for pid in EXPECTED_DATES}
    expected = sorted(((n, pid) for pid, n in counts.items() if n > 0), key=lambda x: (-x[0], x[1]))
    assert list(zip(ranked.pixels, ranked.patch)) == expected
    assert len(expected) >= 2


# -- bad inputs ----------------------------------------------------------------------------------
def _write_like(src_path: Path, dst: Path, **changes) -> None:
    with rasterio.open(src_path) as src:
        a, prof = src.read(1), src.profile
    prof.update(changes)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(dst, "w", **prof) as out:
        out.write(a, 1)


def test_mismatched_grid_and_crs_name_the_patch(tmp_path):
    truth = next(DEMO_FLAIR.glob("*/*/msk/MSK_000473.tif"))
    with rasterio.open(truth) as src:
        t = src.transform
    shifted = tmp_path / "shift" / "PRED_000473.tif"
    _write_like(truth, shifted, transform=Affine(t.a, t.b, t.c + 10, t.d, t.e, t.f))
    with pytest.raises(AlignmentError, match="Patch 000473.*same pixel grid"):
        metrics.evaluate(metrics.resolve_pairs(str(truth), str(shifted)))
    other_crs = tmp_path / "crs" / "PRED_000473.tif"
    _write_like(truth, other_crs, crs="EPSG:3857")
    with pytest.raises(AlignmentError, match="Patch 000473.*EPSG:3857") as exc:
        metrics.evaluate(metrics.resolve_pairs(str(truth), str(other_crs)))
    assert exc.value.fix


def test_folders_match_suffixed_prediction_names(demo, tmp_path):
    preds = tmp_path / "preds"
    preds.mkdir()
    for f in (demo / "folders" / "unet-b").glob("PRED_*.tif"):
        shutil.copy(f, preds / f"{f.stem}_unet-b.tif")  # PRED_<id>_unet-b.tif, like the demo predictions
    pairs = metrics.folder_pairs(demo / "flair", preds)
    assert sorted(p.patch for p in pairs) == sorted(EXPECTED_DATES)
    assert all(p.pred.name == f"PRED_{p.patch}_unet-b.tif" for p in pairs)
    shutil.copy(preds / "PRED_000473_unet-b.tif", preds / "PRED_000473_other.tif")
    with pytest.raises(FlairVizError, match="Patch 000473: two prediction files"):
        metrics.folder_pairs(demo / "flair", preds)


def test_missing_partner_names_the_patch(demo, tmp_path):
    preds = tmp_path / "preds"
    shutil.copytree(demo / "folders" / "unet-a", preds)
    (preds / "PRED_084558.tif").unlink()
    with pytest.raises(FlairVizError, match="084558") as exc:
        metrics.folder_pairs(demo / "flair", preds)
    assert "PRED_<id>" in exc.value.problem and exc.value.fix


def test_truncated_prediction_and_folder_output_are_clear_errors(demo, tmp_path):
    truth = next((demo / "flair").glob("*/*/msk/MSK_034217.tif"))
    good = demo / "folders" / "unet-a" / "PRED_034217.tif"
    cut = tmp_path / "cut" / "PRED_034217.tif"
    cut.parent.mkdir()
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    store = tmp_path / "m.parquet"
    with pytest.raises(FlairVizError, match="Patch 034217") as exc:
        metrics.evaluate(metrics.resolve_pairs(str(truth), str(cut)), store)
    assert exc.value.fix and not store.exists()
    with pytest.raises(FlairVizError, match="is a folder"):
        metrics.evaluate(metrics.resolve_pairs(str(truth), str(good)), tmp_path)


def test_cli_error_exits_2_without_traceback(demo, tmp_path):
    preds = tmp_path / "preds"
    shutil.copytree(demo / "folders" / "unet-a", preds)
    (preds / "PRED_050549.tif").unlink()
    r = subprocess.run([sys.executable, "-m", "flair_viz", "evaluate", "--truth", str(demo / "flair"), "--pred",
                        str(preds), "--out", str(tmp_path / "m.parquet")], capture_output=True, text=True,
                       cwd=REPO, env=dict(os.environ), timeout=120)
    assert r.returncode == 2
    assert "error:" in r.stderr and "050549" in r.stderr and "fix:" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "m.parquet").exists()


def test_cli_json_summary_matches_independent_scores(demo, tmp_path, capsys):
    from flair_viz.cli.main import main

    out = tmp_path / "m.parquet"
    rc = main(["evaluate", "--truth", str(demo / "flair"), "--pred", str(demo / "folders" / "unet-b"),
               "--out", str(out), "--protocol", "flair1", "--json"])
    captured = capsys.readouterr()
    assert rc == 0
    doc = json.loads(captured.out)
    exp = merge_flair1(expected_total(demo, "unet-b", list(EXPECTED_DATES)))
    assert doc["confusion_matrix"]["values"] == exp.tolist()
    assert doc["confusion_matrix"]["rows"] == "truth"
    iou = plain_iou(exp)
    assert doc["miou"] == pytest.approx(np.nanmean(iou[:12]), abs=1e-6)
    assert doc["overall_accuracy"] == pytest.approx(np.trace(exp) / exp.sum(), abs=1e-6)
    assert doc["iou"]["building"] == pytest.approx(iou[0], abs=1e-6)
    assert "mIoU" in captured.err and out.exists()  # the table goes to stderr with --json


# -- confusion tiles --------------------------------------------------------------------------------
def test_confusion_tile_highlights_exactly_the_counted_pixels(demo, monkeypatch):
    monkeypatch.delenv("FLAIR_VIZ_TOKEN", raising=False)
    truth_path = next((demo / "flair").glob("*/*/msk/MSK_050549.tif"))
    t = read1(truth_path)
    counts = np.bincount(t.ravel(), minlength=20)
    c1, c2 = int(np.argmax(counts)), 19  # a block where the main class is predicted as "other"
    p = t.copy()
    block = np.zeros_like(t, dtype=bool)
    block[100:400, 120:420] = True
    p[block & (t == c1)] = c2
    pred_path = demo / "preds" / "PRED_050549_block.tif"
    with rasterio.open(truth_path) as src:
        prof = src.profile
    with rasterio.open(pred_path, "w", **prof) as dst:
        dst.write(p, 1)
    catalog = demo / "catalog_block.toml"
    catalog.write_text((demo / "catalog.toml").read_text() + '[[dataset]]\nid = "PRED_050549_block"\n'
                       'path = "preds/PRED_050549_block.tif"\nrole = "prediction"\npatch = "050549"\n')
    client = app_client(catalog)
    hit = (t == c1) & (p == c2)

    tile = centre_tile(truth_path, 19)
    r = client.get(f"/datasets/MSK_050549/confusion/PRED_050549_block/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png",
                   params={"truth_class": c1, "pred_class": c2})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    rgba = decode_png(r)
    col, row = tile_to_raster(tile, truth_path, size=rgba.shape[0])
    col, row = np.floor(col).astype(int), np.floor(row).astype(int)
    inside = (row >= 1) & (row < t.shape[0] - 1) & (col >= 1) & (col < t.shape[1] - 1)
    # compare where the 3x3 source neighbourhood is uniform, so sub-pixel warping cannot flip the answer
    padded = np.pad(hit, 1)
    neigh = np.stack([padded[1 + dr : 1 + dr + hit.shape[0], 1 + dc : 1 + dc + hit.shape[1]]
                      for dr in (-1, 0, 1) for dc in (-1, 0, 1)])
    all_hit, none_hit = neigh.all(axis=0), ~neigh.any(axis=0)
    rr, cc = np.clip(row, 0, t.shape[0] - 1), np.clip(col, 0, t.shape[1] - 1)
    sure_hit = inside & all_hit[rr, cc]
    sure_miss = inside & none_hit[rr, cc]
    assert sure_hit.sum() > 50 and sure_miss.sum() > 50
    assert (rgba[sure_hit] == [255, 0, 255, 255]).all()
    assert (rgba[sure_miss][:, 3] == 0).all()
    # FLAIR-1 protocol view: 19 "other" is protocol class 13; no 13..18 in this patch, so the same pixels
    merged = client.get(f"/datasets/MSK_050549/confusion/PRED_050549_block/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png",
                        params={"truth_class": c1, "pred_class": 13, "protocol": "flair1"})
    assert not np.isin(t, np.arange(13, 19)).any() and not np.isin(p, np.arange(13, 19)).any()
    np.testing.assert_array_equal(decode_png(merged), rgba)

    bad = client.get(f"/datasets/MSK_050549/confusion/IMG_050549/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png",
                     params={"truth_class": c1, "pred_class": c2})
    assert bad.status_code == 400 and "not a class raster" in bad.json()["detail"]
    unknown = client.get(f"/datasets/MSK_050549/confusion/NOPE/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png",
                         params={"truth_class": c1, "pred_class": c2})
    assert unknown.status_code == 404
    by_path = client.get(f"/datasets/MSK_050549/confusion/PRED_050549_block/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png",
                         params={"truth_class": c1, "pred_class": c2, "path": "/etc/passwd"})
    assert by_path.status_code == 400


# -- the page ---------------------------------------------------------------------------------------
@pytest.fixture()
def fresh_streamlit_caches():
    """AppTest runs in this process: drop cached catalogs/results so each test sees its own catalog."""
    import streamlit as st

    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    st.cache_data.clear()
    st.cache_resource.clear()


def test_metrics_page_runs_filters_and_opens_the_map(demo, monkeypatch, fresh_streamlit_caches, tile_server):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("FLAIR_VIZ_CATALOG", str(demo / "catalog.toml"))
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60)
    at.run()
    at.switch_page("pages/2_Metrics.py").run()
    assert not at.exception and not at.error
    exp = merge_flair1(expected_total(demo, "unet-a", list(EXPECTED_DATES)))
    miou = next(m for m in at.metric if m.label.startswith("mIoU"))
    assert "FLAIR-1 protocol" in miou.label
    assert miou.value == f"{np.nanmean(plain_iou(exp)[:12]):.3f}"

    at.multiselect(key="metrics_domains").select("D074_2020").run()
    assert not at.exception
    exp = merge_flair1(expected_total(demo, "unet-a", ["050549"]))
    assert next(m for m in at.metric if m.label.startswith("mIoU")).value == f"{np.nanmean(plain_iou(exp)[:12]):.3f}"
    off = exp.copy()
    np.fill_diagonal(off, 0)
    worst = tuple(int(v) + 1 for v in np.unravel_index(np.argmax(off), off.shape))
    assert tuple(at.selectbox(key="metrics_cell").value) == worst

    at.button(key="metrics_open").click().run()
    assert not at.exception
    assert at.title[0].value == "Explore"
    assert at.session_state["explore_scene"] == "IMG_050549"


def test_prediction_is_scored_against_the_real_mask_of_its_vintage(tmp_path):
    from flair_viz.core.catalog import Dataset

    msk = next(DEMO_FLAIR.glob("*/*/msk/MSK_000473.tif"))
    cat = Catalog(tmp_path)
    common = dict(role="truth", patch="000473", outside_root=True)
    cat.add(Dataset(id="SIM", path=msk, vintage="2024-07-01", simulated=True, **common))
    cat.add(Dataset(id="OTHER_YEAR", path=msk, vintage="2018-07-01", **common))
    cat.add(Dataset(id="REAL", path=msk, vintage="2021-07-09", **common))
    pred = cat.add(Dataset(id="P", path=msk, role="prediction", patch="000473", vintage="2021-07-09", outside_root=True))
    cat.add(Dataset(id="LONELY", path=msk, role="prediction", patch="999999", outside_root=True))
    assert cat.truth_of(pred).id == "REAL"
    assert [p.truth_id for p in metrics.catalog_pairs(cat)] == ["REAL"]
    assert [d.id for d in metrics.unpaired_predictions(cat)] == ["LONELY"]


def test_metrics_page_on_the_bundled_demo_catalog(monkeypatch, fresh_streamlit_caches, tile_server):
    """The demo story: open Metrics on the shipped catalog, see the FLAIR-protocol mIoU, filter by domain."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.delenv("FLAIR_VIZ_CATALOG", raising=False)
    cat = Catalog.load(REPO / "data" / "demo" / "catalog.toml")
    preds = [d for d in cat.by_role("prediction") if d.patch]
    assert preds, "the demo catalog ships predictions"
    model = metrics.model_name(preds[0])

    def expected(domains: set[str] | None) -> str:
        total = np.zeros((19, 19), np.int64)
        for d in preds:
            if metrics.model_name(d) == model and (domains is None or d.domain in domains):
                total += np_confusion(read1(cat.truth_of(d).path), read1(d.path))[0]
        return f"{np.nanmean(plain_iou(merge_flair1(total))[:12]):.3f}"

    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60)
    at.run()
    at.switch_page("pages/2_Metrics.py").run()
    assert not at.exception and not at.error
    assert next(m for m in at.metric if m.label.startswith("mIoU · FLAIR-1")).value == expected(None)
    domain = sorted({d.domain for d in preds})[0]
    at.multiselect(key="metrics_domains").select(domain).run()
    assert not at.exception
    assert next(m for m in at.metric if m.label.startswith("mIoU")).value == expected({domain})
