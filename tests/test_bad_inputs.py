"""Bad inputs: every case names the problem and the fix, in the CLI and in the UI, and writes nothing.

Decisions this suite pins down:

* mask value 0 is nodata (allowed); values outside the nomenclature (42, 255 in FLAIR-1) make
  ``catalog validate``/``scan`` report the mask as invalid, and an evaluation ignores those pixels
  and reports how many it ignored;
* a file name with spaces and non-ASCII characters must *work* (catalog IDs get an ASCII-safe form);
* a raster far bigger than what we may hold in memory is counted block by block.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import streamlit as st
import torch
from streamlit.testing.v1 import AppTest

from flair_viz.cli.main import main
from flair_viz.core.catalog import Catalog, Dataset
from tests.helpers import DEMO_CATALOG, REPO, flair_folder, save_catalog, sparse_class_raster, write_tif
from tests.model_fixtures import make_model, save_checkpoint, tiny_unet

torch.set_num_threads(1)
DEMO_MODEL = "demo-unet-r18"
PX_HA = 0.2 * 0.2 / 10_000


# -- inputs ----------------------------------------------------------------------------------------
def _truncate(src: Path, dst: Path) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 2])  # the header survives, the pixel tail does not
    return dst


@pytest.fixture()
def bad(tmp_path: Path) -> dict[str, Path]:
    """A folder of bad (and a few good) inputs, all small."""
    rng = np.random.default_rng(8)
    d = tmp_path / "in"
    f = {
        "img5": write_tif(d / "img5.tif", rng.integers(0, 255, (5, 96, 96), dtype=np.uint8)),
        "img3": write_tif(d / "img3.tif", rng.integers(0, 255, (3, 96, 96), dtype=np.uint8)),
        "mask": write_tif(d / "mask.tif", rng.integers(1, 20, (96, 96), dtype=np.uint8)),
        "mask_utm": write_tif(d / "mask_utm.tif", rng.integers(1, 20, (96, 96), dtype=np.uint8),
                              crs="EPSG:32631", origin=(500000, 4800000)),
        "mask_far": write_tif(d / "mask_far.tif", rng.integers(1, 20, (96, 96), dtype=np.uint8),
                              origin=(700000.0, 6600000.0)),
    }
    f["trunc_img"] = _truncate(f["img5"], d / "trunc_img.tif")
    f["trunc_mask"] = _truncate(f["mask"], d / "trunc_mask.tif")
    f["text"] = d / "text.tif"
    f["text"].write_text("this is a text file with a .tif name\n")
    f["empty"] = d / "empty"
    f["empty"].mkdir()
    # FLAIR layouts: image and mask in different CRS; a broken and a non-object metadata JSON
    img, msk = rng.integers(0, 255, (5, 64, 64), dtype=np.uint8), rng.integers(1, 20, (64, 64), dtype=np.uint8)
    f["crs_folder"] = flair_folder(d / "crs", {"000001": (img, None)})
    write_tif(d / "crs/D001_2020/Z1_UA/msk/MSK_000001.tif", msk, crs="EPSG:32631", origin=(500000, 4800000))
    f["meta_broken"] = flair_folder(d / "meta_broken", {"000002": (img, msk)})
    (f["meta_broken"] / "flair_metadata.json").write_text('{"IMG_000002": {"domain": ', encoding="utf-8")
    f["meta_list"] = flair_folder(d / "meta_list", {"000003": (img, msk)})
    (f["meta_list"] / "flair_metadata.json").write_text('[1, 2]', encoding="utf-8")
    f["meta_ok"] = flair_folder(d / "meta_ok", {"000004": (img, msk)})
    return f


@pytest.fixture()
def bad_models(tmp_path: Path, monkeypatch) -> Path:
    """Cards whose checkpoints do not match: renamed keys, and a 12-class head under a 19-class card."""
    d = tmp_path / "models"
    d.mkdir()
    monkeypatch.setenv("FLAIR_VIZ_MODELS", str(d))
    monkeypatch.setenv("FLAIR_VIZ_DEVICE", "cpu")
    make_model(d, "bad-keys", "pth")
    sd = torch.load(d / "bad-keys.pth", weights_only=True)
    torch.save({k.replace("encoder.", "backbone."): v for k, v in sd.items()}, d / "bad-keys.pth")
    make_model(d, "bad-shape", "pth")
    save_checkpoint(tiny_unet(classes=12), d / "bad-shape.pth", "pth")
    return d


def sentinel(path: Path, text: str = "previous output\n") -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path.read_bytes()


def partials(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".partial" in p.name]


def assert_clean_error(rc: int, err: str, needles: tuple[str, ...]) -> None:
    assert rc == 2, err
    assert "error: " in err and "\nfix: " in err, err
    assert "Traceback" not in err
    lowered = err.lower()
    for needle in needles:
        assert needle.lower() in lowered, (needle, err)


# -- CLI, in process ---------------------------------------------------------------------------------
# (id, argv with {placeholders}, words the error must contain, the output that must not change)
CASES = [
    ("corrupt-tiff-predict", ["predict", "--model", DEMO_MODEL, "{trunc_img}", "{out}/pred.tif", "--quiet"],
     ("trunc_img.tif", "truncated"), "pred.tif"),
    ("corrupt-tiff-change", ["change", "{mask}", "{trunc_mask}", "--out", "{out}/chg"], ("trunc_mask.tif", "truncated"),
     "chg/change.tif"),
    ("corrupt-tiff-evaluate", ["evaluate", "--truth", "{mask}", "--pred", "{trunc_mask}", "--out", "{out}/m.parquet"],
     ("trunc_mask.tif", "truncated"), "m.parquet"),
    ("not-a-tiff-predict", ["predict", "--model", DEMO_MODEL, "{text}", "{out}/pred.tif", "--quiet"],
     ("text.tif", "not a readable GeoTIFF"), "pred.tif"),
    ("not-a-tiff-evaluate", ["evaluate", "--truth", "{mask}", "--pred", "{text}", "--out", "{out}/m.parquet"],
     ("text.tif", "not a readable GeoTIFF"), "m.parquet"),
    ("wrong-band-count", ["predict", "--model", DEMO_MODEL, "{img3}", "{out}/pred.tif", "--quiet"],
     ("img3.tif", "3 band(s)", "needs 5", "NIR"), "pred.tif"),
    ("crs-mismatch-evaluate", ["evaluate", "--truth", "{mask}", "--pred", "{mask_utm}", "--out", "{out}/m.parquet"],
     ("EPSG:2154", "EPSG:32631"), "m.parquet"),
    ("no-overlap-change", ["change", "{mask}", "{mask_far}", "--out", "{out}/chg"],
     ("do not overlap", "mask_far.tif"), "chg/change.tif"),
    ("checkpoint-wrong-keys", ["predict", "--model", "bad-keys", "{img5}", "{out}/pred.tif", "--quiet"],
     ("bad-keys", "missing key", "unexpected key", "backbone."), "pred.tif"),
    ("checkpoint-wrong-shapes", ["predict", "--model", "bad-shape", "{img5}", "{out}/pred.tif", "--quiet"],
     ("bad-shape", "shape mismatch", "(12,", "classes"), "pred.tif"),
    ("unknown-model", ["predict", "--model", "no-such-model", "{img5}", "{out}/pred.tif", "--quiet"],
     ("no-such-model", "known models"), "pred.tif"),
    ("unknown-dataset-change", ["change", "NO_SUCH_ID", "MSK_000473", "--out", "{out}/chg"],
     ("NO_SUCH_ID", "catalog"), "chg/change.tif"),
    ("unknown-dataset-evaluate", ["evaluate", "--truth", "NO_SUCH_ID", "--pred", "MSK_000473", "--out", "{out}/m.parquet"],
     ("NO_SUCH_ID",), "m.parquet"),
    ("unknown-dataset-predict", ["predict", "--model", DEMO_MODEL, "NO_SUCH_ID", "--out", "{out}/preds"],
     ("NO_SUCH_ID",), "preds/PRED_NO_SUCH_ID.tif"),
    ("empty-folder-scan", ["catalog", "scan", "{empty}", "--catalog", "{out}/cat.toml"],
     ("No FLAIR patches", "IMG_<id>.tif"), "cat.toml"),
    ("empty-folder-evaluate", ["evaluate", "--truth", "{empty}", "--pred", "{empty}", "--out", "{out}/m.parquet"],
     ("MSK_<id>.tif", "empty"), "m.parquet"),
    ("empty-folder-predict", ["predict", "--model", DEMO_MODEL, "{empty}", "--out", "{out}/preds"],
     ("No scenes", "empty"), "preds"),
    ("metadata-invalid-json", ["catalog", "scan", "{meta_broken}", "--catalog", "{out}/cat.toml"],
     ("flair_metadata.json", "not valid JSON"), "cat.toml"),
    ("metadata-not-an-object", ["catalog", "scan", "{meta_list}", "--catalog", "{out}/cat.toml"],
     ("flair_metadata.json", "keyed by patch"), "cat.toml"),
    ("metadata-missing", ["catalog", "scan", "{meta_ok}", "--metadata", "{out}/nope.json", "--catalog", "{out}/cat.toml"],
     ("Metadata file not found", "nope.json"), "cat.toml"),
]


@pytest.mark.parametrize("argv,needles,output", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_cli_error_names_problem_and_fix_and_keeps_previous_output(bad, bad_models, tmp_path, capsys, monkeypatch,
                                                                   argv, needles, output):
    monkeypatch.setenv("FLAIR_VIZ_CATALOG", str(DEMO_CATALOG))
    out = tmp_path / "out"
    out.mkdir()
    final = out / output
    # an earlier run's output must survive a failed run byte for byte (a catalog must not appear at all)
    if final.suffix == ".parquet":  # a real earlier metrics store, which the failed run must not touch
        assert main(["evaluate", "--truth", str(bad["mask"]), "--pred", str(bad["mask"]), "--out", str(final)]) == 0
        capsys.readouterr()
        before = final.read_bytes()
    else:
        before = None if final.suffix in (".toml", "") else sentinel(final)
    rc = main([a.format(out=out, **bad) for a in argv])
    assert_clean_error(rc, capsys.readouterr().err, needles)
    if before is None:
        assert not final.exists()
    else:
        assert final.read_bytes() == before
        assert sorted(p.name for p in final.parent.iterdir()) == [final.name]  # nothing else written beside it
    assert not partials(tmp_path)


def test_scan_reports_a_mask_in_another_crs_by_name_and_indexes_the_rest(bad, tmp_path, capsys):
    """Issue 12: a scan lists the bad file (with the fix) and still indexes the good ones."""
    cat_file = tmp_path / "out" / "cat.toml"
    rc = main(["catalog", "scan", str(bad["crs_folder"]), "--catalog", str(cat_file)])
    assert_clean_error(rc, capsys.readouterr().err, ("MSK_000001", "EPSG:2154", "EPSG:32631", "reproject"))
    cat = Catalog.load(cat_file)
    assert "IMG_000001" in cat and "MSK_000001" not in cat  # the image is indexed, the misaligned mask is not
    assert not partials(tmp_path)


def test_cli_errors_in_a_fresh_process_have_no_traceback(bad, tmp_path):
    """The same contract from a shell: non-zero exit, 'error:' and 'fix:' on stderr, no traceback."""
    out = tmp_path / "out"
    runs = {
        "corrupt": ["predict", "--model", DEMO_MODEL, str(bad["trunc_img"]), str(out / "p.tif"), "--quiet"],
        "no-overlap": ["change", str(bad["mask"]), str(bad["mask_far"]), "--out", str(out / "chg")],
        "unknown-id": ["change", "NO_SUCH_ID", "MSK_000473", "--out", str(out / "chg2")],
        "empty": ["catalog", "scan", str(bad["empty"]), "--catalog", str(out / "c.toml")],
    }
    env = {**os.environ, "FLAIR_VIZ_CATALOG": str(DEMO_CATALOG), "OMP_NUM_THREADS": "1"}
    procs = {k: subprocess.Popen([sys.executable, "-m", "flair_viz", *argv], cwd=REPO, env=env, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE) for k, argv in runs.items()}
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=120)
        assert proc.returncode != 0, name
        assert "error: " in err and "fix: " in err and "Traceback" not in err, (name, err)
    assert not [p for p in out.rglob("*") if p.is_file()] if out.exists() else True


# -- mask values outside the nomenclature ------------------------------------------------------------
def test_mask_values_zero_is_nodata_42_and_255_are_invalid_and_evaluation_ignores_them(tmp_path, capsys):
    rng = np.random.default_rng(3)
    truth = rng.integers(1, 20, (64, 64), dtype=np.uint8)
    truth[:4] = 0  # nodata
    truth[10, :7] = 42
    truth[20, :5] = 255
    pred = rng.integers(1, 20, (64, 64), dtype=np.uint8)
    pred[30, :3] = 0
    pred[40, :6] = 42
    img = rng.integers(0, 255, (5, 64, 64), dtype=np.uint8)
    root = flair_folder(tmp_path / "d", {"000010": (img, truth), "000011": (img, np.where(truth > 19, 1, truth))})
    cat_file = tmp_path / "cat.toml"
    rc = main(["catalog", "scan", str(root), "--catalog", str(cat_file)])
    out = capsys.readouterr().out
    assert rc == 2
    invalid = [line for line in out.splitlines() if line.startswith("invalid:")]
    assert len(invalid) == 1 and "MSK_000010" in invalid[0] and "[42, 255]" in invalid[0] and "Fix:" in invalid[0]
    assert "MSK_000011" not in out  # 0 (nodata) alone is fine
    truth_path = root / "D001_2020/Z1_UA/msk/MSK_000010.tif"
    cat = Catalog.load(cat_file)
    assert "MSK_000010" not in cat and "MSK_000011" in cat  # the invalid mask is left out, the valid one kept
    cat.add(Dataset(id="MSK_000010", path=truth_path, role="truth", patch="000010"))  # added by hand
    save_catalog(cat, cat_file)
    rc = main(["catalog", "validate", "--catalog", str(cat_file)])
    assert rc == 2 and "[42, 255]" in capsys.readouterr().out

    pred_path = write_tif(tmp_path / "pred" / "PRED_000010.tif", pred)
    rc = main(["evaluate", "--truth", str(truth_path), "--pred", str(pred_path), "--protocol", "full", "--json",
               "--out", str(tmp_path / "m.parquet")])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    doc = json.loads(cap.out)
    valid = (truth >= 1) & (truth <= 19) & (pred >= 1) & (pred <= 19)
    assert doc["ignored_pixels"] == int((~valid).sum()) > 0
    expected = np.zeros((19, 19), np.int64)
    np.add.at(expected, (truth[valid] - 1, pred[valid] - 1), 1)
    np.testing.assert_array_equal(np.array(doc["confusion_matrix"]["values"]), expected)
    assert f"{int((~valid).sum())} pixel(s) ignored" in cap.err


# -- names with spaces and non-ASCII characters ------------------------------------------------------
def test_spaces_and_non_ascii_names_work_end_to_end(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FLAIR_VIZ_DEVICE", "cpu")
    rng = np.random.default_rng(5)
    img = rng.integers(0, 255, (5, 96, 96), dtype=np.uint8)
    truth = rng.integers(1, 20, (96, 96), dtype=np.uint8)
    root = tmp_path / "Données été"
    flair_folder(root, {"ölé 1": (img, truth)}, domain="D034_2021", zone="Été 2021")
    zone = root / "D034_2021" / "Été 2021"
    img_path, msk_path = zone / "img" / "IMG_ölé 1.tif", zone / "msk" / "MSK_ölé 1.tif"

    cat_file = tmp_path / "Catalogue à jour.toml"
    assert main(["catalog", "scan", str(root), "--catalog", str(cat_file)]) == 0, capsys.readouterr().err
    cat = Catalog.load(cat_file)
    image, mask = cat.get("IMG_ole_1"), cat.get("MSK_ole_1")
    assert (image.path, mask.path, image.zone, image.patch) == (img_path, msk_path, "Été 2021", mask.patch)
    assert "ölé 1" in image.title

    pred_path = tmp_path / "Prédictions 2021" / "PRED_ölé 1.tif"
    assert main(["predict", "--model", DEMO_MODEL, str(img_path), str(pred_path), "--quiet"]) == 0
    with rasterio.open(pred_path) as ds, rasterio.open(img_path) as src:
        pred = ds.read(1)
        assert ds.transform.almost_equals(src.transform) and ds.crs == src.crs and pred.shape == (96, 96)
    assert set(np.unique(pred)) <= set(range(1, 20))

    out = tmp_path / "Changé à 2024"
    assert main(["change", str(msk_path), str(pred_path), "--out", str(out)]) == 0
    with open(out / "from_to.csv", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))[1:]
    matrix = np.array([[float(v) for v in r[1:]] for r in rows])
    expected = np.zeros((19, 19))
    np.add.at(expected, (truth.ravel() - 1, pred.ravel() - 1), PX_HA)
    np.testing.assert_allclose(matrix, expected, rtol=1e-9, atol=1e-12)

    capsys.readouterr()
    assert main(["evaluate", "--truth", str(root), "--pred", str(pred_path.parent), "--protocol", "full", "--json",
                 "--out", str(tmp_path / "Métriques é.parquet")]) == 0
    doc = json.loads(capsys.readouterr().out)
    cm = np.zeros((19, 19), np.int64)
    np.add.at(cm, (truth.ravel() - 1, pred.ravel() - 1), 1)
    np.testing.assert_array_equal(np.array(doc["confusion_matrix"]["values"]), cm)
    assert doc["pairs"] == 1


# -- tile server (the ``client`` fixture: tests/conftest.py) ------------------------------------------
ROUTES = {
    "aerial": "/datasets/{a}/tiles/WebMercatorQuad/{z}/{x}/{y}.png",
    "predict": "/datasets/{a}/predict/{m}/tiles/WebMercatorQuad/{z}/{x}/{y}.png",
    "confusion": "/datasets/{a}/confusion/{b}/tiles/WebMercatorQuad/{z}/{x}/{y}.png?truth_class=1&pred_class=2",
    "change": "/change/{a}/{b}/tiles/WebMercatorQuad/{z}/{x}/{y}.png",
}
GOOD = {"aerial": ("IMG_000473", "", DEMO_MODEL), "predict": ("IMG_000473", "", DEMO_MODEL),
        "confusion": ("MSK_000473", "PRED_000473_demo-unet-r18", ""), "change": ("MSK_000473", "MSK_000473_SIM2024", "")}


@pytest.mark.parametrize("route", list(ROUTES))
def test_unknown_ids_are_404_json_with_a_fix(client, route):
    a, b, m = GOOD[route]
    variants = [dict(a="NO_SUCH_ID", b=b, m=m)]
    if b:
        variants.append(dict(a=a, b="NO_SUCH_ID", m=m))
    if route == "predict":
        variants.append(dict(a=a, b=b, m="no-such-model"))
    for ids in variants:
        r = client.get(ROUTES[route].format(z=19, x=1, y=1, **ids))
        assert r.status_code == 404, (ids, r.status_code, r.text)
        body = r.json()
        assert ("NO_SUCH_ID" in body["detail"] or "no-such-model" in body["detail"]) and body["fix"]


@pytest.mark.parametrize("route", list(ROUTES))
def test_bad_zxy_is_4xx_never_500(client, route):
    a, b, m = GOOD[route]
    for z, x, y in [(99, 1, 1), (-1, 0, 0), (19, -1, 5), (3, 8, 0), (3, 0, 8), (19, 10**30, 1), ("a", "b", "c"),
                    (19, "1.5", 2)]:
        r = client.get(ROUTES[route].format(z=z, x=x, y=y, a=a, b=b, m=m))
        assert 400 <= r.status_code < 500, (z, x, y, r.status_code, r.text[:200])
        assert r.headers["content-type"].startswith("application/json")


def test_point_query_outside_the_data_is_404_not_500(client):
    for lonlat in ("0,0", "3.8785,43.6113", "179.9,-89.9"):
        r = client.get(f"/datasets/MSK_000473/point/{lonlat}")
        assert r.status_code == 404 and "outside" in r.json()["detail"].lower(), (lonlat, r.status_code, r.text)


# -- UI --------------------------------------------------------------------------------------------
def run_page(page: str, monkeypatch, catalog: Path, **env: str) -> AppTest:
    monkeypatch.setenv("FLAIR_VIZ_CATALOG", str(catalog))
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    st.cache_resource.clear()  # the catalog store and model results are process-wide resources
    st.cache_data.clear()
    return AppTest.from_file(str(REPO / page), default_timeout=120).run()


def assert_page_error(at: AppTest, *needles: str) -> None:
    assert not at.exception, [e.value for e in at.exception]
    errors = " ".join(e.value for e in at.error)
    for needle in needles:
        assert needle in errors, (needle, errors)
    assert "Fix:" in errors
    shown = " ".join(str(e.value) for kind in (at.markdown, at.caption, at.code, at.text, at.error, at.warning, at.info)
                     for e in kind)
    assert "Traceback" not in shown and 'File "' not in shown


def write_catalog(path: Path, datasets: list[dict]) -> Path:
    lines = ['data_root = "."']
    for ds in datasets:
        lines.append("[[dataset]]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in ds.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("page", ["pages/1_Explore.py", "pages/2_Metrics.py", "pages/3_Change.py", "pages/4_Annotate.py"])
def test_pages_show_a_missing_or_broken_catalog_as_an_error(page, tmp_path, monkeypatch, tile_server):
    at = run_page(page, monkeypatch, tmp_path / "missing.toml")
    assert_page_error(at, "Catalog file not found", "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text('data_root = "."\n[[dataset]\nid = 1\n', encoding="utf-8")
    at = run_page(page, monkeypatch, broken)
    assert_page_error(at, "broken.toml is not valid TOML")


def test_pages_name_the_files_a_scan_left_out_and_show_the_rest(tmp_path, monkeypatch, tile_server):
    from tests.test_catalog_index import scan_with_a_broken_patch

    _, bad, cat = scan_with_a_broken_patch(tmp_path, 1, 2)
    at = run_page("pages/1_Explore.py", monkeypatch, cat)
    assert not at.exception and not at.error, [e.value for e in at.error]
    warned = " ".join(w.value for w in at.sidebar.warning)
    assert bad.name in warned and "Fix:" in warned
    assert "Catalog: 1 file(s) left out" in [e.label for e in at.sidebar.expander]


def test_metrics_page_reports_a_crs_mismatch_and_writes_no_store(bad, tmp_path, monkeypatch, tile_server):
    cat = write_catalog(tmp_path / "in" / "cat.toml", [
        {"id": "MSK_P1", "path": "mask.tif", "role": "truth", "patch": "P1"},
        {"id": "PRED_P1", "path": "mask_utm.tif", "role": "prediction", "patch": "P1"}])
    store = tmp_path / "metrics.parquet"
    at = run_page("pages/2_Metrics.py", monkeypatch, cat, FLAIR_VIZ_METRICS=str(store))
    assert_page_error(at, "EPSG:2154", "EPSG:32631")
    assert not store.exists() and not partials(tmp_path)


def test_change_page_reports_no_overlap_and_corrupt_rasters(bad, tmp_path, monkeypatch, tile_server):
    common = {"role": "truth", "patch": "P1", "domain": "D001_2020", "zone": "Z1"}
    cat = write_catalog(tmp_path / "in" / "cat.toml", [
        {"id": "A_2020", "path": "mask.tif", "vintage": "2020-06-01", **common},
        {"id": "B_2023", "path": "mask_far.tif", "vintage": "2023-06-01", **common}])
    assert_page_error(run_page("pages/3_Change.py", monkeypatch, cat), "do not overlap", "B_2023")
    cat = write_catalog(tmp_path / "in" / "cat2.toml", [
        {"id": "A_2020", "path": "mask.tif", "vintage": "2020-06-01", **common},
        {"id": "B_2023", "path": "trunc_mask.tif", "vintage": "2023-06-01", **common}])
    assert_page_error(run_page("pages/3_Change.py", monkeypatch, cat), "trunc_mask.tif")
    assert not partials(tmp_path)


def test_annotate_page_reports_wrong_band_count_and_a_bad_checkpoint(bad, bad_models, tmp_path, monkeypatch,
                                                                      tile_server_on):
    cat = write_catalog(tmp_path / "in" / "cat.toml", [
        {"id": "IMG_3BANDS", "path": "img3.tif", "role": "image", "patch": "P3", "bands": ["R", "G", "B"]},
        {"id": "IMG_5BANDS", "path": "img5.tif", "role": "image", "patch": "P5",
         "bands": ["R", "G", "B", "NIR", "elevation"]}])
    tile_server_on(cat)  # the page asks the server for candidates: one on this catalog and these models
    at = run_page("pages/4_Annotate.py", monkeypatch, cat, FLAIR_VIZ_SELECTIONS=str(tmp_path / "sel.gpkg"))
    assert at.selectbox(key="ann_model").value == DEMO_MODEL
    assert_page_error(at, "IMG_3BANDS", "img3.tif", "3 band(s)")  # the 5-band scene is still ranked
    assert any("IMG_5BANDS" in str(v) for v in at.selectbox(key="ann_map_scene").options)
    at.selectbox(key="ann_model").set_value("bad-shape").run()
    assert_page_error(at, "bad-shape", "shape mismatch")
    at.selectbox(key="ann_model").set_value("bad-keys").run()
    assert_page_error(at, "bad-keys", "missing key")
    assert not (tmp_path / "sel.gpkg").exists() and not partials(tmp_path)


def test_annotate_page_reports_a_corrupt_selections_file_and_leaves_it_alone(bad, tmp_path, monkeypatch, tile_server_on):
    cat = write_catalog(tmp_path / "in" / "cat.toml", [
        {"id": "IMG_5BANDS", "path": "img5.tif", "role": "image", "patch": "P5",
         "bands": ["R", "G", "B", "NIR", "elevation"]}])
    corrupt = tmp_path / "selections.gpkg"
    corrupt.write_bytes(b"SQLite format 3\x00" + b"\x00" * 100)  # a truncated GeoPackage
    before = corrupt.read_bytes()
    tile_server_on(cat)
    at = run_page("pages/4_Annotate.py", monkeypatch, cat, FLAIR_VIZ_SELECTIONS=str(corrupt))
    assert_page_error(at, "selections.gpkg")
    assert corrupt.read_bytes() == before and not partials(tmp_path)


# -- a raster too big for memory ---------------------------------------------------------------------
STREAM_CHILD = r"""
import json, resource, sys
from flair_viz import change  # import first: the baseline includes the libraries
from flair_viz.cli import main as cli
from flair_viz import metrics
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if sys.argv[1] == "change":
    r = change.compute_change(sys.argv[2], sys.argv[3])
    result = {"matrix_ha": r.from_to_ha().tolist()}
else:
    rc = cli.main(["evaluate", "--truth", sys.argv[2], "--pred", sys.argv[3], "--protocol", "full", "--json",
                   "--out", sys.argv[4]])
    result = {"rc": rc}
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print("RESULT " + json.dumps({**result, "growth_mb": (peak - base) / 1024}))
"""


def test_a_raster_too_big_for_memory_is_streamed(tmp_path):
    """32768² px (1.07 GB per raster uncompressed): counting grows the process by a small fraction of that.

    ``predict`` is not run at this size (a CPU forward over 1 G px takes hours); it reads and writes window
    by window (IGN sliding window), which ``tests/test_inference.py`` checks against whole-array predictions.

    GDAL's own block cache is bounded separately (5 % of RAM by default); the child caps it at 64 MB so
    the measure is of our code, not of a cache that a big machine is allowed to fill.
    """
    size = 32768
    n = size // 512
    rng = np.random.default_rng(4)
    cells = {(int(r), int(c)) for r, c in rng.integers(0, n, (40, 2))}
    before = [(r, c, 1 + i % 19) for i, (r, c) in enumerate(sorted(cells))]
    after = [(r, c, 1 + (i * 7) % 19) for i, (r, c) in enumerate(sorted(cells))][::2]  # half the blocks changed
    a, b = tmp_path / "big_before.tif", tmp_path / "big_after.tif"
    sparse_class_raster(a, size, before)
    sparse_class_raster(b, size, after)
    assert a.stat().st_size + b.stat().st_size < 5_000_000  # sparse: tiny on disk
    uncompressed_mb = size * size / 2**20

    env = {**os.environ, "GDAL_CACHEMAX": "64", "OMP_NUM_THREADS": "1"}
    def child(*args: str) -> dict:
        proc = subprocess.run([sys.executable, "-c", STREAM_CHILD, *args], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        printed, result = proc.stdout.split("RESULT ", 1)
        return {**json.loads(result), "printed": printed}

    # independent expectation: only the written blocks hold classes; every other pixel is nodata
    expected = np.zeros((19, 19))
    after_by_cell = {(r, c): v for r, c, v in after}
    for r, c, v in before:
        if (r, c) in after_by_cell:
            expected[v - 1, after_by_cell[(r, c)] - 1] += 512 * 512 * PX_HA
    res = child("change", str(a), str(b))
    np.testing.assert_allclose(np.array(res["matrix_ha"]), expected, rtol=1e-9)
    assert res["growth_mb"] < uncompressed_mb / 4, res["growth_mb"]

    res = child("evaluate", str(a), str(b), str(tmp_path / "big.parquet"))
    assert res["rc"] == 0
    doc = json.loads(res["printed"])
    np.testing.assert_array_equal(np.array(doc["confusion_matrix"]["values"]), np.round(expected / PX_HA).astype(int))
    assert doc["ignored_pixels"] == size * size - int(round(expected.sum() / PX_HA))
    assert res["growth_mb"] < uncompressed_mb / 4, res["growth_mb"]
