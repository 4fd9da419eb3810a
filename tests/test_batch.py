"""Batch work on Dask: a 2-worker LocalCluster gives exactly the single-process results, survives a killed
worker, and a rerun skips what is finished. Scenes are crops of the demo patches; the model is tiny."""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from distributed import WorkerPlugin

from flair_viz import metrics
from flair_viz.change import batch as change_batch
from flair_viz.change import cli as change_cli
from flair_viz.cli import main as cli
from flair_viz.core import atomic, raster, scenes
from flair_viz.core import jobs as batch
from flair_viz.core.catalog import Catalog
from flair_viz.core.errors import InvalidInput, InvalidRaster
from flair_viz.metrics import batch as metrics_batch
from flair_viz.predict import batch as predict_batch
from flair_viz.predict import cards, inference
from tests.helpers import REPO, app_client, centre_tile, decode_png, write_tif
from tests.model_fixtures import make_model

DEMO = REPO / "data" / "demo" / "flair"
# (height, width) of each crop: one wider than a window (two windows), one taller, two small
SIZES = [(300, 280), (256, 600), (520, 260), (400, 400)]
X0, Y0, STEP = 961436.8, 6329262.4, 130.0  # crops laid side by side, 130 m apart (wider than 600 px × 0.2 m)


def crop(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """Top-left h × w of a patch tiled twice each way (so a crop can exceed the 512 px patch)."""
    return np.tile(a, (1, 2, 2))[:, :h, :w]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A FLAIR-layout folder of 4 scenes with masks, a tiny model card and a catalog over both."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("batch")
    card_path, _ = make_model(root, "tiny")
    imgs = sorted(DEMO.glob("**/img/IMG_*.tif"), key=lambda p: p.name)
    layout = {}
    for i, (img, (h, w)) in enumerate(zip(imgs, SIZES)):
        pid = img.stem.split("_", 1)[1]
        layout[pid] = (i, h, w)
        origin = (X0 + i * STEP, Y0)
        write_tif(root / "data" / "scenes" / "D001_2020" / "Z1_UA" / "img" / img.name, crop(raster.read(img), h, w),
                  origin=origin)
        msk = img.parent.parent / "msk" / f"MSK_{pid}.tif"
        write_tif(root / "data" / "scenes" / "D001_2020" / "Z1_UA" / "msk" / msk.name, crop(raster.read(msk), h, w),
                  origin=origin)
    (root / "data" / "catalog.toml").write_text('data_root = "."\n\n[[scan]]\npath = "scenes"\n', encoding="utf-8")
    card = cards.get_card(str(card_path))
    ref = root / "ref"
    found = scenes.expand([str(root / "data" / "scenes")])
    for s in found:  # the single-process reference, computed independently of Dask
        inference.predict_file(card, s.path, ref / f"PRED_{s.name}.tif", progress=False)
    return {"root": root, "card": card, "card_path": card_path, "scenes": found, "ref": ref,
            "catalog": root / "data" / "catalog.toml", "masks": root / "data" / "scenes", "layout": layout}


@pytest.fixture(scope="module")
def client(work):
    mp = pytest.MonkeyPatch()
    mp.setenv("FLAIR_VIZ_DATA", str(work["root"] / "user"))  # workers inherit the environment at spawn
    c = batch.get_client(workers=2)
    yield c
    batch.close_client(c)
    mp.undo()


def decoded(path: Path) -> tuple[np.ndarray, tuple]:
    with rasterio.open(path) as ds:
        return ds.read(1), (ds.crs.to_epsg(), tuple(ds.transform), ds.dtypes[0], ds.nodata)


def assert_same_as_reference(work, out_dir: Path) -> None:
    for s in work["scenes"]:
        got, got_geo = decoded(out_dir / f"PRED_{s.name}.tif")
        want, want_geo = decoded(work["ref"] / f"PRED_{s.name}.tif")
        assert got_geo == want_geo
        assert got.tobytes() == want.tobytes()


def test_two_workers_match_single_process_and_mosaic_is_served(work, client, tmp_path):
    out = work["root"] / "data" / "pred_a"
    res = predict_batch.batch_predict(work["scenes"], work["card"], out, client, progress=False,
                              catalog_file=work["catalog"])
    assert sorted(res.computed) == sorted(s.name for s in work["scenes"]) and res.skipped == []
    assert_same_as_reference(work, out)
    # tasks spread over both workers, and each worker process built the model once
    pids = {t["pid"] for t in res.tasks}
    assert len(pids) == 2 and os.getpid() not in pids
    for pid in pids:
        assert len({t["model_instance"] for t in res.tasks if t["pid"] == pid}) == 1
    # the VRT covers the union of the scenes and shows each scene's classes at its place
    with rasterio.open(res.mosaic) as vrt:
        assert vrt.width == round((3 * STEP + 400 * 0.2) / 0.2) and vrt.height == max(h for h, _ in SIZES)
        assert vrt.width / vrt.overviews(1)[-1] <= 256  # zoomed-out tiles read overviews, not every pixel
        for s in work["scenes"]:
            i, h, w = work["layout"][s.name]
            col = round(i * STEP / 0.2)
            want, _ = decoded(work["ref"] / f"PRED_{s.name}.tif")
            assert np.array_equal(vrt.read(1, window=rasterio.windows.Window(col, 0, w, h)), want)
    # registered in the catalog (hand-written [[scan]] kept): the mosaic, and each patch's prediction
    # linked to its patch, so the Explore page lists it over its image
    cat = Catalog.load(work["catalog"])
    ds = cat.get(res.catalog_id)
    assert ds.role == "prediction" and ds.path == res.mosaic.resolve() and cat.get("IMG_000473").role == "image"
    from flair_viz.web import explore

    listed = {sc.image.id: {p.id: p.path for p in sc.predictions} for sc in explore.list_scenes(cat)}
    for s in work["scenes"]:
        assert listed[f"IMG_{s.name}"] == {f"PRED_{s.name}_tiny": (out / f"PRED_{s.name}.tif").resolve()}
    app = app_client(work["catalog"])
    t = centre_tile(out / f"PRED_{work['scenes'][0].name}.tif", 20)
    tiles = []
    for ds_id in (res.catalog_id, f"PRED_{work['scenes'][0].name}_tiny"):
        r = app.get(f"/datasets/{ds_id}/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png")
        assert r.status_code == 200, r.text
        tiles.append(decode_png(r))
    assert (tiles[0][..., 3] == 255).mean() > 0.3 and np.array_equal(tiles[0], tiles[1])


def test_rerun_after_interruption_skips_finished_scenes(work, client):
    out = work["root"] / "pred_b"
    first, rest = work["scenes"][:2], work["scenes"][2:]
    predict_batch.batch_predict(first, work["card"], out, client, progress=False, mosaic=False)  # "interrupted" job
    stamps = {s.name: (out / f"PRED_{s.name}.tif").stat().st_mtime_ns for s in first}
    # a crash between the COG and its manifest, and a leftover temp file, must not count as finished
    shutil.copy(work["ref"] / f"PRED_{rest[0].name}.tif", out / f"PRED_{rest[0].name}.tif")
    (out / f".PRED_{rest[1].name}.tif.x.partial.tif").write_bytes(b"half")
    res = predict_batch.batch_predict(work["scenes"], work["card"], out, client, progress=False)
    assert sorted(res.skipped) == sorted(s.name for s in first)
    assert sorted(res.computed) == sorted(s.name for s in rest)
    assert {s.name: (out / f"PRED_{s.name}.tif").stat().st_mtime_ns for s in first} == stamps
    assert_same_as_reference(work, out)
    # a changed input is recomputed; the others are not
    img = work["scenes"][0].path
    st = img.stat()
    os.utime(img, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    res = predict_batch.batch_predict(work["scenes"], work["card"], out, client, progress=False)
    assert res.computed == [work["scenes"][0].name] and len(res.skipped) == 3


class KillFirstPredict(WorkerPlugin):
    """Kills its worker process when a predict task starts executing there, once per marker file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def transition(self, key, start, finish, **kwargs):
        name = key if isinstance(key, str) else str(key)
        if finish == "executing" and name.startswith("predict-") and not os.path.exists(self.marker):
            with open(self.marker, "w") as fh:
                fh.write(str(os.getpid()))
            os._exit(1)


def test_killed_worker_job_completes_with_identical_results(work, client):
    out = work["root"] / "pred_c"
    marker = work["root"] / "killed.pid"
    client.register_plugin(KillFirstPredict(str(marker)), name="kill-first")
    try:
        res = predict_batch.batch_predict(work["scenes"], work["card"], out, client, progress=False, mosaic=False)
    finally:
        client.unregister_worker_plugin("kill-first")
    killed = int(marker.read_text())
    assert killed not in {t["pid"] for t in res.tasks}  # the killed process finished nothing…
    assert len(res.computed) == len(work["scenes"])  # …yet every scene was predicted
    assert_same_as_reference(work, out)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # nothing partial left behind
    client.wait_for_workers(2, timeout=60)


def numpy_confusion(t: np.ndarray, p: np.ndarray) -> np.ndarray:
    cm = np.zeros((19, 19), np.int64)
    for a in range(1, 20):
        for b in range(1, 20):
            cm[a - 1, b - 1] = int(np.sum((t == a) & (p == b)))
    return cm


def test_batch_evaluate_matches_single_process_and_numpy(work, client, tmp_path):
    pairs = metrics.folder_pairs(work["masks"], work["ref"], model="tiny")
    store = tmp_path / "m.parquet"
    run = metrics_batch.batch_evaluate(pairs, store, client, chunk_size=1, progress=False)
    assert run.computed == len(pairs) == 4 and run.reused == 0
    single = metrics.evaluate(pairs)
    by_patch = dict(zip(run.table.meta["patch"], run.table.matrices))
    for pair, cm in zip(single.table.meta["patch"], single.table.matrices):
        assert np.array_equal(by_patch[pair], cm)
    for pair in pairs:
        want = numpy_confusion(decoded(pair.truth)[0], decoded(pair.pred)[0])
        assert np.array_equal(by_patch[pair.patch], want)
    again = metrics_batch.batch_evaluate(pairs, store, client, progress=False)
    assert again.computed == 0 and again.reused == 4
    assert len(metrics.MetricsTable.read(store)) == 4


def test_batch_change_table_matches_single_pair_runs(work, client, tmp_path):
    rows = [(f"scenes/D001_2020/Z1_UA/msk/MSK_{s.name}.tif", str(work["ref"] / f"PRED_{s.name}.tif"), f"p{s.name}")
            for s in work["scenes"]]
    pairs_csv = work["root"] / "data" / "pairs.csv"
    with open(pairs_csv, "w", newline="") as fh:
        csv.writer(fh).writerows([("before", "after", "name"), *rows])
    jobs = change_batch.read_pairs_csv(pairs_csv)
    table = change_batch.batch_change(jobs, tmp_path / "chg", client, progress=False)
    assert list(table["name"]) == [r[2] for r in rows]
    for s, row in zip(work["scenes"], table.to_dict("records")):
        t = decoded(work["masks"] / "D001_2020" / "Z1_UA" / "msk" / f"MSK_{s.name}.tif")[0]
        p = decoded(work["ref"] / f"PRED_{s.name}.tif")[0]
        assert row["changed_area_ha"] == pytest.approx(np.sum((t != p) & (t > 0) & (p > 0)) * 0.04 / 1e4, rel=1e-9)
        single = change_cli.run(str(work["masks"] / "D001_2020" / "Z1_UA" / "msk" / f"MSK_{s.name}.tif"),
                                str(work["ref"] / f"PRED_{s.name}.tif"), tmp_path / "one" / s.name, None)
        assert row["artificialisation_ha"] == single.zan()["artificialisation_ha"]
        assert decoded(tmp_path / "chg" / row["name"] / "change.tif")[0].tobytes() == \
            decoded(tmp_path / "one" / s.name / "change.tif")[0].tobytes()
    import pandas as pd

    assert pd.read_parquet(tmp_path / "chg" / "changes.parquet").equals(table)
    stamp = (tmp_path / "chg" / "p000473" / "summary.json").stat().st_mtime_ns
    again = change_batch.batch_change(jobs, tmp_path / "chg", client, progress=False)
    assert again.equals(table) and (tmp_path / "chg" / "p000473" / "summary.json").stat().st_mtime_ns == stamp


def test_cli_predict_many_on_existing_scheduler_and_errors(work, client, tmp_path, capsys):
    addr = client.scheduler.address
    out = work["root"] / "data" / "pred_cli"
    rc = cli.main(["predict", "--model", str(work["card_path"]), "--scheduler", addr, "--out", str(out),
                   "--catalog", str(work["catalog"]), "--quiet", str(work["masks"])])
    assert rc == 0, capsys.readouterr().err
    assert_same_as_reference(work, out)
    assert Catalog.load(work["catalog"]).get("MOSAIC_tiny").path == (out / "MOSAIC_tiny.vrt").resolve()
    capsys.readouterr()
    rc = cli.main(["predict", "--model", str(work["card_path"]), "--scheduler", addr, "--out", str(tmp_path),
                   "--quiet", str(tmp_path / "nothing*.tif")])
    err = capsys.readouterr().err
    assert rc == 2 and "error:" in err and "fix:" in err and "Traceback" not in err
    rc = cli.main(["predict", "--model", str(work["card_path"]), "--scheduler", addr, "--out", str(tmp_path / "x"),
                   "--catalog", str(work["catalog"]), "--quiet", str(work["masks"])])
    err = capsys.readouterr().err
    assert rc == 0 and "outside the data root" in err and "--outside-root" in err  # written, not registered
    assert (tmp_path / "x" / "MOSAIC_tiny.vrt").exists()
    assert Catalog.load(work["catalog"]).get("MOSAIC_tiny").path == (out / "MOSAIC_tiny.vrt").resolve()
    rc = cli.main(["evaluate", "--truth", str(work["masks"]), "--pred", str(out), "--scheduler", addr,
                   "--out", str(tmp_path / "m.parquet"), "--json"])
    assert rc == 0
    stored = metrics.MetricsTable.read(tmp_path / "m.parquet")
    assert np.array_equal(stored.total(), metrics.evaluate(metrics.folder_pairs(work["masks"], out)).table.total())
    pairs_csv = tmp_path / "pairs.csv"
    pairs_csv.write_text("before,after\n" + "".join(f"{work['masks']}/D001_2020/Z1_UA/msk/MSK_{s.name}.tif,"
                                                      f"{out}/PRED_{s.name}.tif\n" for s in work["scenes"]))
    rc = cli.main(["change", "--pairs", str(pairs_csv), "--scheduler", addr, "--out", str(tmp_path / "chg")])
    assert rc == 0
    import pandas as pd

    table = pd.read_csv(tmp_path / "chg" / "changes.csv")
    assert sorted(table["name"]) == sorted(f"MSK_{s.name}.tif__PRED_{s.name}.tif" for s in work["scenes"])


def test_model_tasks_ask_for_gpus_only_where_workers_have_them(client):
    from distributed import Client, LocalCluster

    assert batch.cluster_plan(client)[0] is None  # CPU workers: no resource constraint
    with LocalCluster(n_workers=1, processes=False, threads_per_worker=1, resources={batch.GPU: 1},
                      dashboard_address=None) as gpu_cluster, Client(gpu_cluster) as gpu_client:
        resources, per_host, _ = batch.cluster_plan(gpu_client)
        assert resources == {batch.GPU: 1} and sum(per_host.values()) == 1
        fut = gpu_client.submit(os.getpid, resources=resources, pure=False)
        assert fut.result(timeout=30) == os.getpid()  # it ran on the (in-process) GPU worker


def test_huge_scene_split_into_blocks_matches_whole_scene_and_resumes(work, client, tmp_path):
    img = sorted(DEMO.glob("**/img/IMG_000473.tif"))[0]
    big = write_tif(tmp_path / "in" / "IMG_999999.tif", crop(raster.read(img), 1000, 900))
    inference.predict_file(work["card"], big, tmp_path / "ref.tif", progress=False)  # whole scene, one process
    scene = scenes.expand([str(big)])[0]
    blocks = predict_batch.scene_blocks(1000, 900, 256)
    rows, cols = len(inference.window_plan(1000)), len(inference.window_plan(900))
    assert len(blocks) == rows * cols > 1
    # kept areas tile the scene exactly once
    cover = np.zeros((1000, 900), np.int32)
    for b in blocks:
        cover[b.keep[0]:b.keep[1], b.keep[2]:b.keep[3]] += 1
    assert (cover == 1).all()
    # an interrupted run: three blocks already done on the workers
    out = tmp_path / "out"
    _, checksum = cards.resolve_checkpoint(work["card"])
    job = predict_batch.PredictJob(card=work["card"], checksum=checksum, out_dir=out.resolve(),
                           workers_per_host=batch.cluster_plan(client)[1])
    for b in blocks[:3]:
        assert client.submit(predict_batch.predict_block, job, scene, b, pure=False).result()["output"]
    res = predict_batch.batch_predict([scene], work["card"], out, client, progress=False, mosaic=False, block_px=256)
    block_tasks = [t for t in res.tasks if "blocks" not in t]
    assert len(block_tasks) == len(blocks) - 3 and res.computed == ["999999"]
    assert decoded(out / "PRED_999999.tif")[0].tobytes() == decoded(tmp_path / "ref.tif")[0].tobytes()
    assert decoded(out / "PRED_999999.tif")[1] == decoded(tmp_path / "ref.tif")[1]
    assert sorted(p.name for p in out.iterdir()) == ["PRED_999999.tif", "PRED_999999.tif.manifest.json",
                                                     atomic.SET_MANIFEST]
    assert [p.name for p in atomic.check_set(out)] == ["PRED_999999.tif"]


def test_scene_inputs_folders_globs_catalog_and_errors(work, tmp_path):
    from flair_viz.core.errors import FlairVizError

    folder = work["masks"]
    imgs = sorted(folder.glob("**/img/IMG_*.tif"))
    by_folder = scenes.expand([str(folder)])
    assert [s.path for s in by_folder] == [p.resolve() for p in imgs]
    assert {(s.domain, s.zone) for s in by_folder} == {("D001_2020", "Z1_UA")}
    by_glob = scenes.expand([str(folder / "*" / "*" / "img" / "IMG_0*.tif")])
    assert [s.path for s in by_glob] == [p.resolve() for p in imgs if p.name.startswith("IMG_0")]
    cat = Catalog.load(work["catalog"])
    picked = scenes.expand(["IMG_000473", "catalog:", str(imgs[0])], cat)  # duplicates collapse
    assert sorted(s.name for s in picked) == sorted(p.stem[4:] for p in imgs)
    with pytest.raises(FlairVizError, match="select no scene"):
        scenes.expand(["catalog:"], cat, zone="nope")
    other = write_tif(tmp_path / "b" / imgs[0].name, raster.read(imgs[0]))
    with pytest.raises(FlairVizError, match="same name"):
        scenes.expand([str(folder), str(other)])
    with pytest.raises(FlairVizError, match="neither a catalog ID"):
        scenes.expand([str(tmp_path / "missing.tif")])
    with pytest.raises(FlairVizError, match="only images"):
        scenes.expand(["MSK_000473"], cat)


def test_a_run_is_published_as_one_set_and_a_bad_scene_is_refused_before_any_task(work, client, tmp_path):
    out = work["root"] / "pred_set"
    first = work["scenes"][:2]
    res = predict_batch.batch_predict(first, work["card"], out, client, progress=False)
    assert {p.name for p in atomic.check_set(out)} == {f"PRED_{s.name}.tif" for s in first} | {res.mosaic.name}
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name != atomic.SET_MANIFEST}
    earlier_manifest = (out / atomic.SET_MANIFEST).read_bytes()
    # a uint16 scene after good ones: refused on its header, before any scene is predicted
    u16 = scenes.expand([str(write_tif(tmp_path / "IMG_u16.tif", np.ones((5, 64, 64), np.uint16)))])
    with pytest.raises(InvalidRaster, match="uint16; FLAIR models expect uint8"):
        predict_batch.batch_predict([*work["scenes"], *u16], work["card"], out, client, progress=False)
    # nothing ran, nothing was written, and the earlier set still stands
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name != atomic.SET_MANIFEST} == before
    assert (out / atomic.SET_MANIFEST).read_bytes() == earlier_manifest and atomic.check_set(out)
    # a scene's output that would overwrite another scene's input is refused before any task too
    elsewhere = tmp_path / "pred_b_input"
    elsewhere.mkdir()
    clash = scenes.expand([str(shutil.copy(first[1].path, elsewhere / f"PRED_{first[0].name}.tif"))])
    kept = Path(clash[0].path).read_bytes()
    with pytest.raises(InvalidInput, match="overwrite the input"):
        predict_batch.batch_predict([first[0], *clash], work["card"], elsewhere, client, progress=False, mosaic=False)
    assert Path(clash[0].path).read_bytes() == kept
