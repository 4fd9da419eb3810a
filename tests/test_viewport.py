"""Viewport regions: live tiles requested together are predicted as one region that shares its context.

A per-pixel model (1×1 convolution, as in test_predict_tiles) makes every tile pixel's class computable
by hand with pyproj and numpy, so a region (one chunk or many) must give exactly those classes; the
shapes the model saw show that the tiles shared one margin instead of paying one each.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import morecantile
import numpy as np
import pytest
import torch

from flair_viz.core import config, raster
from flair_viz.core.catalog import Dataset
from flair_viz.predict import cards, inference, live, models, viewport
from flair_viz.predict import scene as scene_module
from flair_viz.predict.runner import TorchRunner
from tests.helpers import L93, clear_live_caches, tile_at, write_tif
from tests.model_fixtures import make_model
from tests.test_predict_tiles import PixelModel, _pixel_proba, _source_pixels

torch.set_num_threads(1)
Z = 18


@pytest.fixture()
def pix(model_dir, monkeypatch):
    """A per-pixel model under the real card "pix", and a fresh region batcher (so `regions` is this test's)."""
    make_model(model_dir, "pix", "pth")
    module = PixelModel().eval()
    loaded = models.LoadedModel(card=cards.get_card("pix"), runner=TorchRunner(module, torch.device("cpu")),
                                device=torch.device("cpu"), checksum="pix-" + "1" * 60)
    monkeypatch.setattr(models, "load_model", lambda card, device=None, engine=None: loaded)
    monkeypatch.setattr(viewport, "REGIONS", viewport.RegionBatcher(max_wait_s=0.3))
    clear_live_caches()
    yield module
    clear_live_caches()


@pytest.fixture()
def scene(tmp_path):
    """A 2400 px (480 m) random 5-band scene: about 4×4 z18 tiles of about 550 source pixels."""
    rng = np.random.default_rng(3)
    path = write_tif(tmp_path / "scene.tif", rng.integers(0, 255, (5, 2400, 2400), dtype=np.uint8), block=256)
    return Dataset(id="SCENE", path=path, role="image", bands=("R", "G", "B", "NIR", "elevation"))


def _block(ds: Dataset, cols: int, rows: int) -> list[morecantile.Tile]:
    """cols × rows z18 tiles (at most 3 × 2) starting left of and above the scene's centre: inside it."""
    b = raster.describe(ds.path).bounds
    t = tile_at((b[0] + b[2]) / 2, (b[1] + b[3]) / 2, L93, Z)
    return [morecantile.Tile(t.x - 1 + i, t.y - 1 + j, Z) for j in range(rows) for i in range(cols)]


def _expected(module: PixelModel, ds: Dataset, t: morecantile.Tile):
    row, col, _, clear = _source_pixels(ds.path, t)
    img = raster.read(ds.path)
    return clear, _pixel_proba(module, img[:, row[clear], col[clear]].T).argmax(1) + 1


def _concurrently(ds: Dataset, tiles: list[morecantile.Tile]) -> list[live.TileResult]:
    with ThreadPoolExecutor(len(tiles)) as pool:
        return list(pool.map(lambda t: live.prediction(ds, "pix", t.z, t.x, t.y), tiles))


def test_concurrent_tiles_form_one_region_with_exact_classes(pix, scene):
    tiles = _block(scene, 2, 2)
    results = _concurrently(scene, tiles)
    assert viewport.REGIONS.regions == [4]  # one region for the four touching tiles
    assert len(pix.shapes) == 1  # ... run as one forward pass (default budget)
    inner = [viewport.inner_window(raster.describe(scene.path),
                                   live._tile_geometry(raster.describe(scene.path), "WebMercatorQuad", Z, t.x, t.y).src_bounds)
             for t in tiles]
    h = max(i[2] for i in inner) - min(i[0] for i in inner)
    w = max(i[3] for i in inner) - min(i[1] for i in inner)
    # one margin around the union, not one per tile
    assert pix.shapes[0][2] == -(-(h + 256) // 32) * 32 and pix.shapes[0][3] == -(-(w + 256) // 32) * 32
    for t, res in zip(tiles, results):
        clear, want = _expected(pix, scene, t)
        assert res.live and clear.sum() > 15_000 and len(np.unique(want)) >= 3
        np.testing.assert_array_equal(res.classes[clear], want)


def test_region_in_many_chunks_is_exact_and_answers_early_tiles_first(pix, scene, monkeypatch):
    monkeypatch.setenv("FLAIR_VIZ_REGION_MPX", "0.5")  # forces several chunks
    tiles = _block(scene, 2, 2)
    info = raster.describe(scene.path)
    loaded = models.load_model("pix")
    order: list[tuple[int, int]] = []  # (forward passes so far, tile index) when each tile was answered
    jobs = []
    for i, t in enumerate(tiles):
        tile_crs, tile_bounds, src_bounds, _ = live._tile_geometry(info, "WebMercatorQuad", Z, t.x, t.y)
        job = viewport.TileJob(loaded, scene, info, [1, 2, 3, 4, 5], ("g",), t.x, t.y, tile_crs, tile_bounds,
                               viewport.inner_window(info, src_bounds), viewport.Future())
        job.done.add_done_callback(lambda _f, i=i: order.append((len(pix.shapes), i)))
        jobs.append(job)
    viewport.predict_region(jobs, inference.Forward(loaded, 1))
    n = len(pix.shapes)
    assert n >= 4 and all(s[2] * s[3] <= 0.5e6 for s in pix.shapes)
    assert min(k for k, _ in order) < n  # some tiles were answered before the last chunk ran
    for t, job in zip(tiles, jobs):
        clear, want = _expected(pix, scene, t)
        np.testing.assert_array_equal(job.done.result()[0][clear], want)  # chunk seams change nothing


def test_separate_areas_are_separate_regions(pix, scene):
    tiles = _block(scene, 3, 1)
    _concurrently(scene, [tiles[0], tiles[2]])  # not touching: two regions, the gap is never predicted
    assert sorted(viewport.REGIONS.regions) == [1, 1]


def test_region_record_keeps_only_the_latest_regions(pix, scene, monkeypatch):
    """A server runs regions for as long as it lives: the batcher remembers the sizes of the last ``keep``
    only. Four regions run here (one forward pass each), of 2, 1, 1 and 2 tiles; three are kept."""
    monkeypatch.setattr(viewport, "REGIONS", viewport.RegionBatcher(max_wait_s=0.3, keep=3))
    tiles = _block(scene, 3, 2)
    _concurrently(scene, tiles[0:2])
    _concurrently(scene, tiles[2:3])
    _concurrently(scene, tiles[3:4])
    _concurrently(scene, tiles[4:6])
    assert len(pix.shapes) == 4  # four regions ran ...
    assert viewport.REGIONS.regions == [1, 1, 2]  # ... and only the last three are remembered, oldest first


def test_chunk_grid_respects_budget_and_covers_region():
    for h, w, mpx in [(550, 550, 5), (1650, 2200, 5), (1650, 2200, 1), (3000, 700, 0.6)]:
        nr, nc = viewport.chunk_grid(h, w, mpx)
        rows, cols = viewport._pieces(0, h, nr), viewport._pieces(0, w, nc)
        assert rows[0][0] == 0 and rows[-1][1] == h and all(a[1] == b[0] for a, b in zip(rows, rows[1:]))
        assert cols[0][0] == 0 and cols[-1][1] == w and all(a[1] == b[0] for a, b in zip(cols, cols[1:]))
        worst = max(viewport._padded(b - a) for a, b in rows) * max(viewport._padded(b - a) for a, b in cols)
        assert worst <= mpx * 1e6
    assert viewport.chunk_grid(1650, 2200, 5) == (1, 1)  # a 4×3 z18 viewport fits one pass


def test_one_scene_prediction_at_a_time(monkeypatch, tmp_path):
    """Coarse tiles of two scenes at once: the second scene prediction waits for the first."""
    active, peak, lock = [0], [0], threading.Lock()

    def fake(loaded, ds, out):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        threading.Event().wait(0.2)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(b"x")
        with lock:
            active[0] -= 1

    monkeypatch.setattr(scene_module, "compute", fake)
    loaded = models.LoadedModel(card=None, runner=TorchRunner(None, "cpu"), device="cpu",  # type: ignore[arg-type]
                                checksum="c" * 64)
    dss = [Dataset(id=f"S{i}", path=write_tif(tmp_path / f"s{i}.tif", np.zeros((1, 8, 8), np.uint8)), role="image")
           for i in range(2)]
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda d: scene_module.scene_codes(loaded, d, live.file_version(d.path)), dss))
    paths = [scene_module.scene_codes(loaded, d, live.file_version(d.path)) for d in dss]  # both done: none run again
    assert peak[0] == 1 and all(p.exists() for p in paths)


def _range(tiles: list[morecantile.Tile]) -> tuple[int, int, int, int]:
    return min(t.x for t in tiles), min(t.y for t in tiles), max(t.x for t in tiles), max(t.y for t in tiles)


def test_viewport_hint_predicts_the_shown_tiles_as_one_region(pix, scene):
    """A map's first tile request carries the shown range: the whole range runs as one region (a browser
    sends 6 requests at a time, so gathering alone would make several), the later requests wait for their
    tile in it instead of queueing another, and every tile is exact."""
    tiles = _block(scene, 3, 2)
    hint = _range(tiles)
    centre = tiles[1]  # a browser asks for the tile nearest the centre first
    live.prediction(scene, "pix", Z, centre.x, centre.y, viewport_hint=hint)
    results = _concurrently(scene, tiles)  # the other five: predicted ahead, or waited for
    assert viewport.REGIONS.regions == [6]
    assert len(pix.shapes) == 1  # one forward pass with one margin around the six
    for t, res in zip(tiles, results):
        clear, want = _expected(pix, scene, t)
        assert res.live and clear.sum() > 15_000
        np.testing.assert_array_equal(res.classes[clear], want)
    live._writer.submit(lambda: None).result()  # tiles predicted ahead are written to the disk cache too
    place = live.resolve(scene, "pix", Z)
    assert all(place.disk(t.x, t.y).exists() for t in tiles)
    assert live._INFLIGHT == {}


def test_viewport_hint_is_ignored_when_it_misses_the_tile_and_bounded_when_huge(pix, scene):
    tiles = _block(scene, 3, 1)
    live.prediction(scene, "pix", Z, tiles[0].x, tiles[0].y, viewport_hint=_range(tiles[1:]))
    assert viewport.REGIONS.regions == [1]  # a range without the asked tile says nothing about its view
    around = live._around(500, 500, (0, 0, 10_000, 10_000))
    cols, rows = live.MAX_VIEWPORT
    assert len(around) == cols * rows - 1 and (500, 500) not in around
    assert {x for x, _ in around} | {500} == set(range(500 - cols // 2, 500 - cols // 2 + cols))
    assert {y for _, y in around} | {500} == set(range(500 - rows // 2, 500 - rows // 2 + rows))
    assert len(live._around(3, 3, (0, 0, 3, 3))) == 15  # a range at its corner: the range, not past it


def test_viewport_query_is_checked(client):
    base = "/datasets/IMG_000473/predict/demo-unet-r18/tiles/WebMercatorQuad/19/1/1.png"
    r = client.get(f"{base}?viewport=5,5,1,1")
    assert r.status_code == 400 and "viewport=5,5,1,1" in r.json()["detail"] and r.json()["fix"]
    assert client.get(f"{base}?viewport=1,2,x,4").status_code == 422


def test_viewport_left_behind_is_dropped_once_asked_tiles_are_answered(pix, scene, monkeypatch):
    """Newer tiles queued (the user panned on): after the asked tile, the rest of the announced viewport is
    cancelled instead of predicted; asking for one of those later predicts it then, exactly."""
    monkeypatch.setenv("FLAIR_VIZ_REGION_MPX", "0.5")  # several chunks, so some remain after the asked tile
    tiles = _block(scene, 3, 2)
    loaded = models.load_model("pix")
    source = live._Source.read(live.resolve(scene, "pix", Z))
    assert source.indexes == [1, 2, 3, 4, 5]
    jobs = [source.job(t.x, t.y, asked=(i == 0)) for i, t in enumerate(tiles)]
    everything = viewport.chunk_grid(max(j.inner[2] for j in jobs) - min(j.inner[0] for j in jobs),
                                     max(j.inner[3] for j in jobs) - min(j.inner[1] for j in jobs))
    viewport.predict_region(jobs, inference.Forward(loaded, 1), stale=lambda: True)
    clear, want = _expected(pix, scene, tiles[0])
    np.testing.assert_array_equal(jobs[0].done.result()[0][clear], want)
    assert len(pix.shapes) < everything[0] * everything[1]  # the chunks of the dropped tiles never ran
    dropped = [j for j in jobs if j.done.cancelled()]
    assert dropped and all(not j.asked for j in dropped)
    t = next(t for t, j in zip(tiles, jobs) if j.done.cancelled())
    res = live.prediction(scene, "pix", Z, t.x, t.y)
    clear, want = _expected(pix, scene, t)
    np.testing.assert_array_equal(res.classes[clear], want)


def test_viewport_hint_off_predicts_only_the_asked_tile(pix, scene, monkeypatch):
    """Several server processes (serve --workers N) would each predict a hinted view in full: there the hint is
    off, and `serve --workers 2` turns it off unless the operator set it."""
    monkeypatch.setenv("FLAIR_VIZ_VIEWPORT_HINT", "0")
    tiles = _block(scene, 3, 2)
    live.prediction(scene, "pix", Z, tiles[1].x, tiles[1].y, viewport_hint=_range(tiles))
    assert viewport.REGIONS.regions == [1]
    from flair_viz.server import run

    monkeypatch.delenv("FLAIR_VIZ_VIEWPORT_HINT")
    monkeypatch.setattr("uvicorn.run", lambda *a, **k: None)
    monkeypatch.setattr(models, "prepare_cpu_engines", lambda **k: [])
    monkeypatch.setattr(config, "bound_memory", lambda: None)  # no process-wide GDAL or malloc settings in pytest
    run.serve(None, "127.0.0.1", 0, workers=2)
    assert not live.hints_on()
