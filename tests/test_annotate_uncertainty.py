"""One entropy for the map and the ranking, normalised by the model's class count (issue 11).

A model with 5 classes returns its probabilities as 19 FLAIR-1 channels, 14 of them zero. Dividing
by log 19 (the channel count) or by log of the channels non-zero in a tile gave different numbers
on the map and in the ranking; both must now equal −Σ p·log p / log 5.
"""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from flair_viz import annotate as A
from flair_viz.core import uncertainty
from flair_viz.core.errors import InvalidInput

X0, Y0, RES = 961436.8, 6329262.4, 0.2
VALUES = [1, 2, 6, 7, 18]  # the FLAIR-1 classes of a 5-class model


def _five_class_proba(h: int = 64, w: int = 64, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """(19, h, w) probabilities with mass only on VALUES' channels, and the 5-channel softmax itself."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, (5, h, w))
    p5 = np.exp(logits) / np.exp(logits).sum(0)
    p19 = np.zeros((19, h, w), np.float32)
    p19[[v - 1 for v in VALUES]] = p5
    return p19, p5


def _reference_entropy(p5: np.ndarray) -> np.ndarray:
    """Independent of the library: float64, natural log, divided by log of the model's 5 classes."""
    return -(p5 * np.log(p5)).sum(0) / np.log(5)


def test_entropy_is_normalised_by_the_models_class_count_not_the_channels() -> None:
    p19, p5 = _five_class_proba()
    ref = _reference_entropy(p5)
    assert ref.max() > 0.9  # some pixels near uniform: a log 19 scale would visibly differ there
    np.testing.assert_allclose(uncertainty.entropy(p19, n_classes=5), ref, atol=2e-5)
    # without the class count, the channel count (19) is the scale: a smaller number, by log 5 / log 19
    np.testing.assert_allclose(uncertainty.entropy(p19), ref * np.log(5) / np.log(19), atol=2e-5)
    top = np.sort(p5, axis=0)
    np.testing.assert_allclose(uncertainty.margin(p19), 1 - (top[-1] - top[-2]), atol=2e-6)


def test_live_tile_codes_and_ranking_give_the_same_entropy() -> None:
    """The live tiles' uncertainty codes and the annotation cells both match the reference."""
    from flair_viz.predict import viewport

    p19, p5 = _five_class_proba()
    ref = _reference_entropy(p5)
    valid = np.ones(ref.shape, bool)
    ent_code, mar_code = viewport.uncertainties(p19, 5, valid)  # what the entropy/margin layers draw
    assert np.abs(ent_code.astype(int) - (1 + np.rint(ref * 254))).max() <= 1  # float32 vs float64 rounding

    transform = rasterio.Affine(RES, 0, X0, 0, -RES, Y0)  # 64 x 64 px in four 32 px (6.4 m) cells
    cells = A.score_cells(p19, transform, n_classes=5, cell_m=32 * RES)
    assert len(cells) == 4
    for row in cells.itertuples():
        block = ref[row.row * 32:(row.row + 1) * 32, row.col * 32:(row.col + 1) * 32]
        assert row.entropy == pytest.approx(block.mean(), abs=1e-5)
    # the page and CLI path: a scene's probabilities carry the model's class count to the scoring
    default = A.score_cells(p19, transform, cell_m=32 * RES)
    assert (default["entropy"] < cells["entropy"] - 0.05).all()


def test_uint8_probabilities_of_a_five_class_model_score_like_floats() -> None:
    p19, p5 = _five_class_proba(seed=5)
    u8 = np.rint(p19 * 255).astype(np.uint8)
    stats = uncertainty.pixel_stats(u8, n_classes=5)
    q = u8[[v - 1 for v in VALUES]].astype(np.float64)
    q /= q.sum(0)  # IGN's uint8 output does not sum to exactly 255: renormalised per pixel
    with np.errstate(divide="ignore", invalid="ignore"):
        ref_u8 = -np.where(q > 0, q * np.log(q), 0).sum(0) / np.log(5)
    np.testing.assert_allclose(stats.entropy, ref_u8, atol=2e-5)
    assert np.abs(stats.entropy - _reference_entropy(p5)).mean() < 0.01  # uint8 quantisation only
    top = np.sort(p5, axis=0)
    clear = top[-1] - top[-2] > 0.01  # uint8 rounding cannot swap the two most likely classes there
    assert clear.mean() > 0.9
    band_of_best = np.asarray([v - 1 for v in VALUES])[p5.argmax(0)]
    np.testing.assert_array_equal(stats.argmax[clear], band_of_best[clear])


def test_bad_class_counts_and_logits_are_refused() -> None:
    p19, _ = _five_class_proba()
    with pytest.raises(InvalidInput, match="≥ 2 classes"):
        uncertainty.pixel_stats(p19, n_classes=1)
    with pytest.raises(InvalidInput, match="logits"):
        uncertainty.pixel_stats(p19 * 3 - 1)
