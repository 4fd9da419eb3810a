"""Live prediction tiles through the FastAPI TestClient, checked against an independent per-pixel computation.

A per-pixel model (a 1×1 convolution) makes every tile pixel's class computable by hand: map the tile
pixel to its source pixel with pyproj, normalise its 5 bands, apply the weights in numpy, take the
argmax. The tile server must show exactly that class's palette colour there.
"""

from __future__ import annotations

import shutil

import morecantile
import numpy as np
import pytest
import torch

from flair_viz.core import classes, raster
from flair_viz.predict import cards, models
from flair_viz.predict import tiles as predict_tiles
from flair_viz.predict.runner import TorchRunner
from tests.helpers import app_client, centre_tile, clear_live_caches, decode_png, tile_to_raster
from tests.model_fixtures import FLAIR_MEAN, FLAIR_STD, make_model

torch.set_num_threads(1)
IMG = "IMG_000473"


class PixelModel(torch.nn.Module):
    """A 1×1 convolution (class depends only on the pixel itself) that records the input shapes it saw."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv = torch.nn.Conv2d(5, 19, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(19, 5, 1, 1, generator=g) * 3)
            self.conv.bias.copy_(torch.randn(19, generator=g))
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, x):
        self.shapes.append(tuple(x.shape))
        return self.conv(x)


@pytest.fixture()
def pixel_model(model_dir, monkeypatch):
    d = model_dir
    make_model(d, "pix", "pth")  # a real card + checkpoint; the network itself is swapped below
    module = PixelModel().eval()
    real_load = models.load_model

    def load(card, device=None):
        if (card if isinstance(card, str) else card.id) != "pix":
            return real_load(card, device)
        card = cards.get_card("pix")
        return models.LoadedModel(card=card, runner=TorchRunner(module, torch.device("cpu")), device=torch.device("cpu"),
                                  checksum="pix-" + "0" * 60)

    monkeypatch.setattr(models, "load_model", load)
    clear_live_caches()
    yield module
    clear_live_caches()


def _source_pixels(path, tile: morecantile.Tile):
    """Source (row, col) under each tile pixel centre, and a mask of centres well inside a source pixel."""
    info = raster.describe(path)
    col, row = tile_to_raster(tile, path)
    fc, fr = col - np.floor(col), row - np.floor(row)
    inside = (col >= 0) & (row >= 0) & (col < info.width) & (row < info.height)
    clear = inside & (fc > 0.2) & (fc < 0.8) & (fr > 0.2) & (fr < 0.8)
    return np.floor(row).astype(int), np.floor(col).astype(int), inside, clear


def _pixel_proba(module: PixelModel, pixels: np.ndarray) -> np.ndarray:
    """Softmax of the 1×1 convolution for (N, 5) uint8 pixels, in float64 numpy."""
    w = module.conv.weight.detach().numpy()[:, :, 0, 0].astype(np.float64)
    b = module.conv.bias.detach().numpy().astype(np.float64)
    x = (pixels - np.array(FLAIR_MEAN)) / np.array(FLAIR_STD)
    logits = x @ w.T + b
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _url(ds: str, model: str, t: morecantile.Tile, layer: str = "class") -> str:
    return f"/datasets/{ds}/predict/{model}/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png?layer={layer}"


def test_live_class_tile_matches_independent_prediction(pixel_model, client):
    path = raster.describe(client.app.state.catalog.get().get(IMG).path).path
    t = centre_tile(path, 19)
    rgba = decode_png(client.get(_url(IMG, "pix", t)))
    assert rgba.shape == (256, 256, 4)
    row, col, inside, clear = _source_pixels(path, t)
    assert clear.sum() > 10_000
    img = raster.read(path)
    want = _pixel_proba(pixel_model, img[:, row[clear], col[clear]].T).argmax(1) + 1
    assert len(np.unique(want)) >= 3  # the check must be able to see a wrong class
    np.testing.assert_array_equal(rgba[clear], classes.palette_rgba()[want])
    assert (rgba[~inside][:, 3] == 0).all()  # outside the image: transparent
    # the model ran live, on native pixels: one window of the tile plus 2 x 128 px context
    assert pixel_model.shapes and all(s[2] >= 256 + 256 and s[2] % 32 == 0 for s in pixel_model.shapes)


def test_entropy_margin_and_error_layers(pixel_model, client):
    cat = client.app.state.catalog.get()
    path = cat.get(IMG).path
    t = centre_tile(path, 19)
    row, col, _, clear = _source_pixels(path, t)
    p = _pixel_proba(pixel_model, raster.read(path)[:, row[clear], col[clear]].T)
    lut = predict_tiles._UNC_LUT
    ent = -(p * np.log(p)).sum(1) / np.log(19)
    top = np.sort(p, axis=1)
    mar = 1 - (top[:, -1] - top[:, -2])
    for layer, u in (("entropy", ent), ("margin", mar)):
        rgba = decode_png(client.get(_url(IMG, "pix", t, layer)))
        code = 1 + np.rint(u * 254).astype(int)
        ok = np.zeros(len(code), bool)
        for d in (-1, 0, 1):  # float32 vs float64 may round to a neighbouring code
            ok |= (rgba[clear] == lut[np.clip(code + d, 1, 255)]).all(axis=1)
        assert ok.mean() == 1.0, layer
        assert len({tuple(c) for c in rgba[clear][:500]}) > 5  # a ramp, not a constant
    truth = raster.read(cat.for_patch("000473", "truth").path, 1)
    pred = p.argmax(1) + 1
    wrong = truth[row[clear], col[clear]] != pred
    rgba = decode_png(client.get(_url(IMG, "pix", t, "error")))
    assert 0 < wrong.sum() < len(wrong)
    np.testing.assert_array_equal(rgba[clear][wrong], np.tile(predict_tiles.ERROR_RGBA, (wrong.sum(), 1)))
    assert (rgba[clear][~wrong][:, 3] == 0).all()


def test_tiles_are_cached_in_memory_and_on_disk(pixel_model, client, _isolated_user_data):
    t = centre_tile(client.app.state.catalog.get().get(IMG).path, 19)
    first = client.get(_url(IMG, "pix", t)).content
    runs = len(pixel_model.shapes)
    assert client.get(_url(IMG, "pix", t)).content == first
    assert len(pixel_model.shapes) == runs  # memory hit
    clear_live_caches()
    assert client.get(_url(IMG, "pix", t, "entropy")).status_code == 200
    assert client.get(_url(IMG, "pix", t)).content == first
    assert len(pixel_model.shapes) == runs  # disk hit: no new forward
    assert list((_isolated_user_data / "cache" / "predict-tiles").rglob(f"{t.y}.npz"))


def test_coarse_zoom_uses_batch_prediction_on_native_windows(pixel_model, client, _isolated_user_data):
    cat = client.app.state.catalog.get()
    path = cat.get(IMG).path
    t = centre_tile(path, 15)
    rgba = decode_png(client.get(_url(IMG, "pix", t)))
    # the whole 512 px patch in one chunk with its 128 px margin (predict/scene.py), never resampled
    assert pixel_model.shapes == [(1, 5, 768, 768)]
    cogs = list((_isolated_user_data / "cache" / "predictions").rglob(f"{IMG}.*.codes.tif"))
    assert cogs
    opaque = rgba[rgba[..., 3] > 0]
    assert 0 < len(opaque) < 256 * 256  # a 100 m patch is a few pixels of a z15 tile
    palette = {tuple(c) for c in classes.palette_rgba()[1:20]}
    assert {tuple(c) for c in opaque} <= palette


def test_demo_model_tile_renders_with_palette_colours(client):
    clear_live_caches()
    t = centre_tile(client.app.state.catalog.get().get(IMG).path, 19)
    rgba = decode_png(client.get(_url(IMG, "demo-unet-r18", t)))
    palette = {tuple(c) for c in classes.palette_rgba()[1:20]}
    opaque = {tuple(c) for c in rgba[rgba[..., 3] > 0]}
    assert opaque and opaque <= palette


def test_errors_are_json(pixel_model, client, tmp_path):
    t = centre_tile(client.app.state.catalog.get().get(IMG).path, 19)
    r = client.get(_url(IMG, "no-such-model", t))
    assert r.status_code == 404 and "no-such-model" in r.json()["detail"] and r.json()["fix"]
    r = client.get(_url("BDORTHO_RGB", "pix", t))
    assert r.status_code == 400 and "3 band(s)" in r.json()["detail"]
    # an image without ground truth has no error layer
    src = client.app.state.catalog.get().get(IMG).path
    shutil.copy(src, tmp_path / "lonely.tif")
    (tmp_path / "cat.toml").write_text('data_root = "."\n[[dataset]]\nid = "LONELY"\npath = "lonely.tif"\n'
                                       'role = "image"\npatch = "999"\nbands = ["R", "G", "B", "NIR", "elevation"]\n')
    other = app_client(tmp_path / "cat.toml")
    r = other.get(_url("LONELY", "pix", t, "error"))
    assert r.status_code == 404 and "ground truth" in r.json()["detail"]
    assert other.get(_url("LONELY", "pix", t)).status_code == 200


def test_models_and_device_endpoints(client):
    listed = {m["id"]: m for m in client.get("/models").json()}
    assert listed["demo-unet-r18"]["demo"] is True
    assert client.get("/device").json() == {"device": models.device_name()}
    # with a model: the engine it runs with here (tests run torch; `auto` would pick a CPU engine)
    got = client.get("/device", params={"model": "demo-unet-r18"}).json()
    assert got == {"device": models.device_name(), "engine": models.load_model("demo-unet-r18").engine}
    assert client.get("/device", params={"model": "no-such-model"}).status_code == 404
