"""Entropy and margin on the live map, for a model with fewer classes than 19: normalised by its own class count.

A 13-class per-pixel model (a 1×1 convolution) makes every tile pixel's probabilities computable by hand.
The map's entropy must be −Σ p log p / log 13 (not / log 19, the number of channels predictions come back
in), and the annotation ranking must give the same number for the same probabilities.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from rasterio.transform import from_origin

from flair_viz import annotate
from flair_viz.core import raster
from flair_viz.predict import cards, models
from flair_viz.predict import tiles as predict_tiles
from flair_viz.predict.runner import TorchRunner
from tests.helpers import centre_tile, clear_live_caches, decode_png, tile_to_raster
from tests.model_fixtures import FLAIR_MEAN, FLAIR_STD, make_model

torch.set_num_threads(1)
IMG = "IMG_000473"
N_CLASSES = 13


@pytest.fixture()
def pixel13(model_dir, monkeypatch):
    make_model(model_dir, "pix13", "pth", classes=N_CLASSES)  # a real card; the network is swapped below
    g = torch.Generator().manual_seed(3)
    conv = torch.nn.Conv2d(5, N_CLASSES, 1).eval()
    with torch.no_grad():
        conv.weight.copy_(torch.randn(N_CLASSES, 5, 1, 1, generator=g) * 0.8)  # soft: entropies spread over 0..1
        conv.bias.copy_(torch.randn(N_CLASSES, generator=g) * 0.3)
    real_load = models.load_model

    def load(card, device=None):
        if (card if isinstance(card, str) else card.id) != "pix13":
            return real_load(card, device)
        return models.LoadedModel(card=cards.get_card("pix13"), runner=TorchRunner(conv, torch.device("cpu")),
                                  device=torch.device("cpu"),
                                  checksum="pix13-" + "0" * 58)

    monkeypatch.setattr(models, "load_model", load)
    clear_live_caches()
    yield conv
    clear_live_caches()


def _clear_pixels(path, tile):
    """Source (row, col) of tile pixels whose centre lies well inside one source pixel."""
    info = raster.describe(path)
    col, row = tile_to_raster(tile, path)
    fc, fr = col - np.floor(col), row - np.floor(row)
    inside = (col >= 0) & (row >= 0) & (col < info.width) & (row < info.height)
    clear = inside & (fc > 0.2) & (fc < 0.8) & (fr > 0.2) & (fr < 0.8)
    return np.floor(row).astype(int), np.floor(col).astype(int), clear


def _softmax(conv, pixels: np.ndarray) -> np.ndarray:
    """(N, 13) probabilities of the 1×1 convolution on (N, 5) uint8 pixels, in float64 numpy."""
    w = conv.weight.detach().numpy()[:, :, 0, 0].astype(np.float64)
    b = conv.bias.detach().numpy().astype(np.float64)
    logits = ((pixels - np.array(FLAIR_MEAN)) / np.array(FLAIR_STD)) @ w.T + b
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _codes_match(rgba: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Per pixel: does the tile colour encode ``u`` (float32 vs float64 may land on a neighbouring code)?"""
    lut = predict_tiles._UNC_LUT
    code = 1 + np.rint(u * 254).astype(int)
    ok = np.zeros(len(code), bool)
    for d in (-1, 0, 1):
        ok |= (rgba == lut[np.clip(code + d, 1, 255)]).all(axis=1)
    return ok


def _url(t, layer: str) -> str:
    return f"/datasets/{IMG}/predict/pix13/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png?layer={layer}"


def test_map_entropy_is_normalised_by_the_models_class_count(pixel13, client):
    path = client.app.state.catalog.get().get(IMG).path
    t = centre_tile(path, 19)
    row, col, clear = _clear_pixels(path, t)
    p = _softmax(pixel13, raster.read(path)[:, row[clear], col[clear]].T)
    plogp = -(p * np.log(p)).sum(1)
    ent13, ent19 = plogp / np.log(N_CLASSES), plogp / np.log(19)
    assert (np.abs(ent13 - ent19) * 254 > 2).mean() > 0.9  # the two normalisations are told apart
    rgba = decode_png(client.get(_url(t, "entropy")))[clear]
    assert _codes_match(rgba, ent13).mean() == 1.0
    assert _codes_match(rgba, ent19).mean() < 0.1
    top = np.sort(p, axis=1)
    rgba = decode_png(client.get(_url(t, "margin")))[clear]
    assert _codes_match(rgba, 1 - (top[:, -1] - top[:, -2])).mean() == 1.0


def test_annotation_ranking_scores_the_same_entropy_as_the_map(pixel13, client):
    path = client.app.state.catalog.get().get(IMG).path
    t = centre_tile(path, 19)
    row, col, clear = _clear_pixels(path, t)
    p = _softmax(pixel13, raster.read(path)[:, row[clear], col[clear]].T)
    # the map's entropy of these pixels, decoded from the colour ramp
    lut = predict_tiles._UNC_LUT[1:].astype(int)
    rgba = decode_png(client.get(_url(t, "entropy")))[clear].astype(int)
    codes = np.array([np.abs(lut - c).sum(1).argmin() + 1 for c in rgba])
    on_map = (codes - 1) / 254
    # the same probabilities, as 19 FLAIR-1 channels like every prediction, in one annotation cell
    proba = np.zeros((19, 1, len(p)), np.float32)
    proba[:N_CLASSES, 0] = p.T
    cells = annotate.score_cells(proba, from_origin(0, 1, 1, 1), dataset="t", n_classes=N_CLASSES,
                                 cell_m=float(len(p)))
    assert len(cells) == 1
    assert cells["entropy"].iloc[0] == pytest.approx(on_map.mean(), abs=1.5 / 254)
    assert cells["entropy"].iloc[0] == pytest.approx((-(p * np.log(p)).sum(1) / np.log(N_CLASSES)).mean(), abs=1e-4)
