"""``flair-viz finetune``: it learns the painted class, writes a traceable card, refuses bad input, survives kills.

A tiny random U-Net (tests/model_fixtures.py) stands in for a real model; "wrong before" is computed
from its actual predictions, never assumed.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import tomllib

import numpy as np
import pytest

from flair_viz.core import raster
from flair_viz.core.errors import InvalidInput, InvalidModel, InvalidRaster, UnknownModel
from flair_viz.correct import jobs, store, training
from flair_viz.predict import cards, inference, models
from tests.helpers import REPO
from tests.model_fixtures import make_model, write_card
from tests.test_corrections import box_px, scene_catalog

BOX = (40, 40, 90, 100)  # pixel rows/cols r0, c0, r1, c1 of the painted polygon


def predicted(model_id: str, cat, ds_id: str = "IMG_900001") -> np.ndarray:
    ds = cat.get(ds_id)
    loaded = models.load_model(cards.get_card(model_id), "cpu")
    data = raster.read(ds.path, inference.band_indexes(loaded.card, tuple(ds.bands), ds.id))
    return inference.classes_from_proba(inference.predict_proba_array(loaded, data))


def painted_class(pred: np.ndarray) -> int:
    """A class the parent predicts on fewest pixels of the box: a correction it gets wrong."""
    r0, c0, r1, c1 = BOX
    counts = np.bincount(pred[r0:r1, c0:c1].ravel(), minlength=20)[1:20]
    return int(np.argmin(counts)) + 1


@pytest.fixture()
def setup(tmp_path, model_dir):
    cat = scene_catalog(tmp_path, size=128)
    make_model(model_dir, "tiny", demo=True)
    before = predicted("tiny", cat)
    k = painted_class(before)
    s = store.CorrectionStore(tmp_path / "corr.gpkg")
    s.add(box_px(*BOX), k, dataset_id="IMG_900001", model_id="tiny")
    return cat, s.path, k, before


def inside(a: np.ndarray) -> np.ndarray:
    r0, c0, r1, c1 = BOX
    return a[r0:r1, c0:c1]


def test_finetune_learns_the_painted_class_and_writes_a_traceable_card(setup, tmp_path):
    cat, corr, k, before = setup
    out_dir = tmp_path / "user-models"
    seen = []
    res = training.finetune("tiny", corr, "tiny-ft", cat, training.Settings(epochs=15, lr=1e-2),
                            models_dir=out_dir, progress=seen.append)
    assert [d["epoch"] for d in seen if "loss" in d] == list(range(1, 16))
    n = (BOX[2] - BOX[0]) * (BOX[3] - BOX[1])
    assert res.pixels == n
    # independent check: predict the whole image with both models and count the box's pixels
    os.environ["FLAIR_VIZ_MODELS"] += os.pathsep + str(out_dir)
    after = predicted("tiny-ft", cat)
    hit_before, hit_after = int((inside(before) == k).sum()), int((inside(after) == k).sum())
    assert hit_after > hit_before + 0.5 * n, (hit_before, hit_after, n)
    # a 128 px image is one window, so the figures the fine-tune reports are the whole-image ones
    assert (res.right_before, res.right_after) == (hit_before, hit_after)
    card = cards.get_card("tiny-ft")
    doc = tomllib.loads(card.card_path.read_text())
    assert card.demo is True and card.checkpoint.suffix == ".safetensors"
    assert card.sha256 == hashlib.sha256(card.checkpoint.read_bytes()).hexdigest()
    assert doc["training"]["parent"] == "tiny" and doc["training"]["corrections"] == str(corr.resolve())
    assert doc["training"]["corrections_sha256"] == hashlib.sha256(corr.read_bytes()).hexdigest()
    assert doc["training"]["epochs"] == 15 and doc["training"]["train"] == "decoder"
    assert (card.mean, card.std, card.in_bands) == (cards.get_card("tiny").mean, cards.get_card("tiny").std,
                                                   cards.get_card("tiny").in_bands)
    assert sorted(p.name for p in out_dir.iterdir()) == ["tiny-ft.safetensors", "tiny-ft.toml"]


def test_the_encoder_stays_frozen_by_default(setup, tmp_path):
    cat, corr, _, _ = setup
    from flair_viz.predict import checkpoints

    training.finetune("tiny", corr, "tiny-ft2", cat, training.Settings(epochs=2), models_dir=tmp_path / "u")
    old = checkpoints.read_state_dict(cards.get_card("tiny").checkpoint)
    new = checkpoints.read_state_dict(tmp_path / "u" / "tiny-ft2.safetensors")
    old = {k.removeprefix("model."): v for k, v in old.items()}
    enc = [k for k in new if k.startswith("encoder.")]
    dec = [k for k in new if k.startswith("decoder.") and new[k].is_floating_point()]
    assert enc and all(np.array_equal(new[k].numpy(), old[k].numpy()) for k in enc)
    assert any(not np.array_equal(new[k].numpy(), old[k].numpy()) for k in dec)


def _no_outputs(folder):
    assert not folder.exists() or [p.name for p in folder.iterdir()] == []


def test_bad_inputs_are_clear_and_leave_nothing(setup, tmp_path, model_dir):
    cat, corr, k, _ = setup
    out = tmp_path / "u"
    empty = tmp_path / "empty.gpkg"
    s = store.CorrectionStore(empty)
    cid = s.add(box_px(0, 0, 5, 5), 3, dataset_id="IMG_900001")
    s.remove([cid])
    with pytest.raises(InvalidInput, match="corrections layer is empty"):
        training.finetune("tiny", empty, "x1", cat, models_dir=out)
    far = store.CorrectionStore(tmp_path / "far.gpkg")
    import shapely

    far.add(shapely.box(100000, 6000000, 100010, 6000010), k, dataset_id="")
    with pytest.raises(InvalidInput, match="outside every image"):
        training.finetune("tiny", far.path, "x2", cat, models_dir=out)
    # bands: a 3-band RGB image under a 5-band model
    rgb_cat = scene_catalog(tmp_path / "rgb", size=128, bands=3)
    with pytest.raises(InvalidRaster, match="needs 5"):
        training.finetune("tiny", corr, "x3", rgb_cat, models_dir=out)
    # a card with no checkpoint file
    write_card(model_dir, "nockpt", "missing.safetensors")
    with pytest.raises(InvalidModel, match="nothing to fine-tune"):
        training.finetune("nockpt", corr, "x4", cat, models_dir=out)
    with pytest.raises(InvalidInput, match="already used"):
        training.finetune("tiny", corr, "tiny", cat, models_dir=out)
    _no_outputs(out)


def _cli(tmp_path, corr, out_id, epochs, progress):
    cmd = [sys.executable, "-m", "flair_viz", "finetune", "--model", "tiny", "--corrections", str(corr), "--out", out_id,
           "--epochs", str(epochs), "--catalog", str(tmp_path / "catalog.toml"), "--models-dir", str(tmp_path / "u"),
           "--progress", str(progress), "--evaluate", "none"]
    return subprocess.Popen(cmd, cwd=REPO, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)


def _wait_epoch(proc, progress, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if progress.exists() and json.loads(progress.read_text()).get("epoch", 0) >= 1:
            return
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        time.sleep(0.05)
    raise AssertionError("no epoch finished")


def test_a_killed_finetune_leaves_no_checkpoint_or_card(setup, tmp_path):
    cat, corr, _, _ = setup
    progress = tmp_path / "p.json"
    proc = _cli(tmp_path, corr, "killed", 5000, progress)
    try:
        _wait_epoch(proc, progress)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = tmp_path / "u"
    assert [p.name for p in out.glob("killed*")] == []  # only a hidden staging folder may remain
    with pytest.raises(UnknownModel):
        cards.get_card("killed")
    (out / ".finetune-killed-leftover").mkdir(parents=True, exist_ok=True)  # as if killed while saving
    training.finetune("tiny", corr, "killed", cat, training.Settings(epochs=1), models_dir=out)
    assert sorted(p.name for p in out.iterdir()) == ["killed.safetensors", "killed.toml"]  # a rerun cleans up


def test_cancelling_a_background_job_stops_it_and_keeps_nothing(setup, tmp_path, monkeypatch):
    _, corr, _, _ = setup
    monkeypatch.setenv("FLAIR_VIZ_CATALOG", str(tmp_path / "catalog.toml"))
    job = jobs.start("tiny", corr, "cancelled", epochs=5000, evaluate="none")
    for _ in range(1200):
        doc = jobs.status(job)
        if doc.get("epoch", 0) >= 1 or doc["state"] == "failed":
            break
        time.sleep(0.1)
    assert doc["state"] == "running", doc
    jobs.cancel(job)
    assert jobs.status(job)["state"] == "cancelled"
    folder = training.user_models_dir()
    assert not folder.exists() or list(folder.iterdir()) == []  # the staging folder went too
    with pytest.raises(UnknownModel):
        cards.get_card("cancelled")


def test_cli_bad_input_exits_2_with_problem_and_fix(setup, tmp_path, capsys):
    from flair_viz.cli.main import main

    _, corr, _, _ = setup
    code = main(["finetune", "--model", "tiny", "--corrections", str(tmp_path / "none.gpkg"), "--out", "x",
                 "--catalog", str(tmp_path / "catalog.toml")])
    err = capsys.readouterr().err
    assert code == 2 and "error: Corrections file not found" in err and "fix:" in err


def test_live_tiles_of_the_new_model_are_its_own(setup, tmp_path):
    """The live tile caches are keyed by checkpoint checksum: the new model's tile shows what it learnt."""
    from morecantile import tms
    from pyproj import Transformer

    from flair_viz.core import config
    from flair_viz.predict import live

    cat, corr, k, before = setup
    training.finetune("tiny", corr, "tiny-live", cat, training.Settings(epochs=15, lr=1e-2))
    ds = cat.get("IMG_900001")
    r0, c0, r1, c1 = BOX
    info = raster.describe(ds.path)
    x, y = info.transform @ ((c0 + c1) / 2, (r0 + r1) / 2)
    lon, lat = Transformer.from_crs(info.crs, "EPSG:4326", always_xy=True).transform(x, y)
    t = tms.get("WebMercatorQuad").tile(lon, lat, 20)
    b = tms.get("WebMercatorQuad").xy_bounds(t)
    mx, my = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True).transform(lon, lat)
    px, py = int((mx - b.left) / (b.right - b.left) * 256), int((b.top - my) / (b.top - b.bottom) * 256)
    old = live.prediction(ds, "tiny", t.z, t.x, t.y)
    new = live.prediction(ds, "tiny-live", t.z, t.x, t.y)
    assert new.classes[py, px] == k and before[(r0 + r1) // 2, (c0 + c1) // 2] != k
    sums = {cards.resolve_checkpoint(cards.get_card(m))[1][:16] for m in ("tiny", "tiny-live")}
    assert len(sums) == 2 and sums <= {p.name for p in (config.cache_dir() / "predict-tiles").iterdir()}
    assert not np.array_equal(old.classes, new.classes)  # not the parent's cached tile under the new ID


def test_background_job_reports_progress_and_finishes(setup, tmp_path, monkeypatch):
    cat, corr, k, _ = setup
    monkeypatch.setenv("FLAIR_VIZ_CATALOG", str(tmp_path / "catalog.toml"))
    job = jobs.start("tiny", corr, "tiny-job", epochs=3, evaluate="corrected")
    states = set()
    for _ in range(1200):
        doc = jobs.status(job)
        states.add(doc["state"])
        if doc["state"] in ("done", "failed"):
            break
        time.sleep(0.1)
    assert doc["state"] == "done", doc
    assert doc["model_id"] == "tiny-job" and doc["pixels"] == 50 * 60
    assert cards.get_card("tiny-job").card_path.parent == training.user_models_dir().resolve()
    # the scene has no ground truth: nothing is scored rather than something made up
    assert all(r["truth_pixels"] == 0 for r in doc["evaluation"])


def test_evaluation_reports_training_pixels_apart(tmp_path, model_dir):
    """Parent vs fine-tuned on ground truth: OA inside the corrections and outside, checked with plain numpy."""
    from flair_viz.core.catalog import Catalog
    from flair_viz.correct import evaluate
    from tests.helpers import write_tif
    from tests.test_corrections import ORIGIN

    rng = np.random.default_rng(1)
    truth = rng.integers(1, 6, (128, 128), dtype=np.uint8)
    write_tif(tmp_path / "IMG_900002.tif", rng.integers(0, 255, (5, 128, 128), dtype=np.uint8), origin=ORIGIN)
    write_tif(tmp_path / "MSK_900002.tif", truth, origin=ORIGIN)
    (tmp_path / "catalog.toml").write_text(
        'data_root = "."\n[[dataset]]\nid = "IMG_900002"\npath = "IMG_900002.tif"\nrole = "image"\npatch = "900002"\n'
        'bands = ["R", "G", "B", "NIR", "elevation"]\n[[dataset]]\nid = "MSK_900002"\npath = "MSK_900002.tif"\n'
        'role = "truth"\npatch = "900002"\n')
    cat = Catalog.load(tmp_path / "catalog.toml")
    make_model(model_dir, "tiny")
    s = store.CorrectionStore(tmp_path / "c.gpkg")
    s.add(box_px(*BOX), 3, dataset_id="IMG_900002")
    training.finetune("tiny", s.path, "tiny-eval", cat, training.Settings(epochs=5), models_dir=model_dir)
    rows = {(r["role"], r["pixels"]): r for r in evaluate.compare("tiny", "tiny-eval", s.load(), cat)}
    r0, c0, r1, c1 = BOX
    used = np.zeros((128, 128), bool)
    used[r0:r1, c0:c1] = True
    for role, model_id in (("parent", "tiny"), ("fine-tuned", "tiny-eval")):
        pred = predicted(model_id, cat, "IMG_900002")
        for subset, mask in (("fine-tuning pixels", used), ("other pixels", ~used)):
            row = rows[(role, subset)]
            assert row["truth_pixels"] == int(mask.sum())
            assert row["overall_accuracy"] == round(float((pred[mask] == truth[mask]).mean()), 4)


def test_corrections_list_cli(tmp_path, capsys):
    from flair_viz.cli.main import main

    s = store.CorrectionStore(tmp_path / "c.gpkg")
    cid = s.add(box_px(0, 0, 10, 10), 7, dataset_id="IMG_X", note="a note")
    assert main(["corrections", "list", "--corrections", str(s.path)]) == 0
    out = capsys.readouterr()
    assert out.out.split("\t")[:3] == [cid, "7", "IMG_X"] and "1 correction(s)" in out.err
