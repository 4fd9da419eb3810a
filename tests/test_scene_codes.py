"""A scene predicted whole, once, on disk (predict/scene.py): the tiles cut from it are the model's output.

A per-pixel model (1×1 convolution, as in test_predict_tiles) makes every native pixel's class, entropy
and margin computable by hand in numpy, whatever the chunks and their context margins, so the stored
codes, a near-native tile cut from them and a coarse tile cut from their overviews can all be checked
pixel by pixel against an independent computation. The cache key tests swap the checkpoint (another
checksum, other weights) and touch the image: both must be predicted again.
"""

from __future__ import annotations

import os
import time

import morecantile
import numpy as np
import pytest
import rasterio
import torch

from flair_viz.core import raster
from flair_viz.core.catalog import Catalog, Dataset
from flair_viz.predict import cards, live, models, scene, viewport
from flair_viz.predict.runner import TorchRunner
from flair_viz.web import story
from tests.helpers import DEMO_CATALOG, L93, clear_live_caches, tile_at, tile_to_raster, write_tif
from tests.model_fixtures import make_model
from tests.test_predict_tiles import PixelModel, _pixel_proba

torch.set_num_threads(1)


@pytest.fixture()
def pix(model_dir, monkeypatch):
    """The card "pix" run by a per-pixel model; ``pix["module"] = PixelModel(seed)`` swaps the checkpoint."""
    make_model(model_dir, "pix", "pth")
    state = {"module": PixelModel(0).eval()}

    def load(card, device=None, engine=None):
        m = state["module"]
        return models.LoadedModel(card=cards.get_card("pix"), runner=TorchRunner(m, torch.device("cpu")),
                                  device=torch.device("cpu"), checksum=f"pix{id(m):x}".ljust(64, "0"))

    monkeypatch.setattr(models, "load_model", load)
    monkeypatch.setattr(viewport, "REGIONS", viewport.RegionBatcher(max_wait_s=0.3))
    clear_live_caches()
    yield state
    clear_live_caches()


@pytest.fixture()
def small_scene(tmp_path):
    """A 700 × 900 px random 5-band scene: several chunks under a 0.3 Mpx budget."""
    rng = np.random.default_rng(5)
    path = write_tif(tmp_path / "scene.tif", rng.integers(0, 255, (5, 700, 900), dtype=np.uint8), block=256)
    return Dataset(id="SMALL", path=path, role="image", bands=("R", "G", "B", "NIR", "elevation"))


def _by_hand(module: PixelModel, path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class, entropy and margin of every native pixel, in float64 numpy (no chunk, no margin)."""
    img = raster.read(path)
    p = _pixel_proba(module, img.reshape(img.shape[0], -1).T)
    top = np.sort(p, axis=1)
    ent = -(p * np.log(p)).sum(1) / np.log(19)
    shape = img.shape[1:]
    return ((p.argmax(1) + 1).reshape(shape), (1 + np.rint(ent * 254)).reshape(shape),
            (1 + np.rint((1 - (top[:, -1] - top[:, -2])) * 254)).reshape(shape))


def test_scene_codes_in_chunks_are_the_model_output_of_every_native_pixel(pix, small_scene, monkeypatch):
    monkeypatch.setenv("FLAIR_VIZ_REGION_MPX", "0.3")
    place = live.resolve(small_scene, "pix", 0)
    path = scene.scene_codes(place.loaded, small_scene, place.version)
    assert len(pix["module"].shapes) >= 4 and all(s[2] * s[3] <= 0.3e6 for s in pix["module"].shapes)
    with rasterio.open(path) as src:
        got = src.read()
        assert src.overviews(1)  # a COG: coarse tiles read its overviews
    cls, ent, mar = _by_hand(pix["module"], small_scene.path)
    assert len(np.unique(cls)) >= 5
    np.testing.assert_array_equal(got[0], cls)  # chunk seams change nothing
    assert np.abs(got[1] - ent).max() <= 1 and np.abs(got[2] - mar).max() <= 1  # float32 vs float64 rounding


def _tile(ds: Dataset, z: int) -> morecantile.Tile:
    b = raster.describe(ds.path).bounds
    return tile_at((b[0] + b[2]) / 2, (b[1] + b[3]) / 2, L93, z)


def test_a_near_native_tile_cut_from_the_scene_equals_the_live_tile(pix, small_scene):
    t = _tile(small_scene, 19)
    live_tile = live.prediction(small_scene, "pix", t.z, t.x, t.y)  # the model run for this tile's region
    place = live.resolve(small_scene, "pix", t.z)
    scene.scene_codes(place.loaded, small_scene, place.version)
    runs = len(pix["module"].shapes)
    clear_live_caches()
    place.disk(t.x, t.y).unlink()  # no cached tile left: the answer must come from the scene's codes
    cut = live.prediction(small_scene, "pix", t.z, t.x, t.y)
    assert len(pix["module"].shapes) == runs  # no model run
    assert cut.live and (cut.classes > 0).sum() > 10_000
    for a, b in ((cut.classes, live_tile.classes), (cut.entropy, live_tile.entropy), (cut.margin, live_tile.margin)):
        np.testing.assert_array_equal(a, b)


def test_a_coarse_tile_holds_native_pixels_classes(pix, tmp_path):
    """Blocks of 32 × 32 equal pixels: a tile pixel (about 8 native pixels at z16) must hold the class of a
    native pixel within reach of its centre (the overview's and the tile's nearest picks), never a blend
    or another model's class; the few classes near each pixel make a wrong value show."""
    rng = np.random.default_rng(9)
    img = np.kron(rng.integers(0, 255, (5, 22, 28), dtype=np.uint8), np.ones((1, 32, 32), np.uint8))
    ds = Dataset(id="BLOCKS", path=write_tif(tmp_path / "blocks.tif", img, block=256), role="image",
                 bands=("R", "G", "B", "NIR", "elevation"))
    t = _tile(ds, 16)
    res = live.prediction(ds, "pix", t.z, t.x, t.y)
    assert not res.live
    cls, _, _ = _by_hand(pix["module"], ds.path)
    col, row = tile_to_raster(t, ds.path)
    h, w = cls.shape
    k = 12
    inside = (col >= k) & (row >= k) & (col < w - k) & (row < h - k)
    assert inside.sum() > 1000 and (res.classes[inside] > 0).all()
    near = [set(np.unique(cls[r - k:r + k + 1, c - k:c + k + 1]))
            for r, c in zip(row[inside].astype(int), col[inside].astype(int))]
    assert np.mean([len(n) for n in near]) < 4  # few candidates: the check below can fail
    assert all(v in n for v, n in zip(res.classes[inside], near))
    assert (res.classes[(col < -k) | (row < -k) | (col > w + k) | (row > h + k)] == 0).all()  # outside: no data


def test_a_changed_checkpoint_or_image_is_predicted_again(pix, small_scene):
    t = _tile(small_scene, 16)
    first = live.prediction(small_scene, "pix", t.z, t.x, t.y).classes
    pix["module"] = PixelModel(7).eval()  # another checkpoint under the same card: another checksum
    clear_live_caches()
    second = live.prediction(small_scene, "pix", t.z, t.x, t.y).classes
    assert len(pix["module"].shapes) >= 1  # the new model ran: the old codes were not served
    shown = first > 0
    assert shown.sum() > 500 and (first[shown] != second[shown]).mean() > 0.5
    cls, _, _ = _by_hand(pix["module"], small_scene.path)
    assert set(np.unique(second[second > 0])) <= set(np.unique(cls))
    codes = list((scene.codes_path(live.resolve(small_scene, "pix", 0).loaded, small_scene, "x")).parent.parent.rglob(
        "SMALL.*.codes.tif"))
    assert len(codes) == 2  # one per checkpoint
    st = os.stat(small_scene.path)
    os.utime(small_scene.path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the image replaced
    clear_live_caches()
    before = len(pix["module"].shapes)
    live.prediction(small_scene, "pix", t.z, t.x, t.y)
    assert len(pix["module"].shapes) > before  # predicted again for the new file version
    assert len(list(codes[0].parent.parent.rglob("SMALL.*.codes.tif"))) == 3


def test_warm_predicts_ahead_and_reports_failures_without_raising(pix, small_scene, tmp_path, capsys, monkeypatch):
    missing = Dataset(id="GONE", path=tmp_path / "gone.tif", role="image")
    during = []
    real = scene.scene_codes
    monkeypatch.setattr(scene, "scene_codes", lambda *a: during.append(live.WARMING.is_set()) or real(*a))
    done = live.warm([missing, small_scene], "pix")
    assert during == [True] and not live.WARMING.is_set()  # /healthz says "warming" while it predicts, then not
    assert len(done) == 1 and done[0].exists() and "GONE" in capsys.readouterr().err
    runs = len(pix["module"].shapes)
    t = _tile(small_scene, 19)
    assert live.prediction(small_scene, "pix", t.z, t.x, t.y).live
    assert len(pix["module"].shapes) == runs  # the first tile after warming runs no model


def test_the_story_warms_its_zone_then_its_patch():
    cat = Catalog.load(DEMO_CATALOG)
    zone, patch = story.warm_targets(cat)
    assert zone.id == "ZONE_D034_2021_Z6_NU" and zone.role == "image"
    assert patch.role == "image" and (patch.domain, patch.zone) == story.DEMO_ZONE
    assert patch.patch == story.demo_figures(cat).why_patch  # the patch step 3 opens


@pytest.mark.parametrize("warm", ["0", "1"])
def test_serve_predicts_the_story_ahead_unless_told_not_to(monkeypatch, warm):
    import threading

    import uvicorn

    from flair_viz.server import run

    ran = threading.Event()
    monkeypatch.setenv("FLAIR_VIZ_WARM", warm)
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: None)
    monkeypatch.setattr(run.config, "bound_memory", lambda: None)  # leaves this process's GDAL settings alone
    monkeypatch.setattr(models, "prepare_cpu_engines", lambda say=None: None)
    monkeypatch.setattr(run, "warm_story", ran.set)
    run.serve(None, "127.0.0.1", 0)
    assert ran.wait(2 if warm == "1" else 0.2) == (warm == "1")
    assert live.WARMING.is_set() == (warm == "1")  # set before the server answers; warm_story (replaced) clears it
    live.WARMING.clear()


def test_a_killed_servers_scratch_is_swept_but_not_a_live_one(pix, small_scene):
    place = live.resolve(small_scene, "pix", 0)
    final = scene.codes_path(place.loaded, small_scene, place.version)
    final.parent.mkdir(parents=True)
    dead, busy = (final.with_name(f".{final.name}.{h * 12}.scratch.tif") for h in "ab")
    other = final.with_name(f".OTHER.codes.tif.{'c' * 12}.scratch.tif")  # another scene's: not this one's to judge
    for p in (dead, busy, other):
        p.write_bytes(b"x")
    old = time.time() - scene.STALE_S - 60
    os.utime(dead, (old, old))
    os.utime(other, (old, old))
    scene.scene_codes(place.loaded, small_scene, place.version)
    assert not dead.exists() and busy.exists() and other.exists() and final.exists()
