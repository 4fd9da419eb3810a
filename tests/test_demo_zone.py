"""The real demo zone (FLAIR-1 D034_2021/Z6_NU, 25 patches) and the demo model shown on it, never trained on it.

Checked against independent sources: the zone's index.csv (copied with its provenance), rasterio's raw CRS,
plain-numpy confusion counts of the shipped predictions, the model card and the checkpoint's own bytes.
"""

from __future__ import annotations

import csv
import hashlib

import numpy as np
import pytest
import rasterio

from flair_viz.core import raster
from flair_viz.core.catalog import Catalog
from flair_viz.predict import cards
from tests.helpers import DEMO, DEMO_CATALOG

ZONE = ("D034_2021", "Z6_NU")


@pytest.fixture(scope="module")
def cat() -> Catalog:
    return Catalog.load(DEMO_CATALOG)


def _zone(cat: Catalog, role: str):
    return sorted((d for d in cat.by_role(role) if (d.domain, d.zone) == ZONE and d.patch), key=lambda d: d.id)


def test_zone_is_registered_with_unique_ids_and_the_local_cs_masks_read_as_lambert93(cat):
    images, truths = _zone(cat, "image"), _zone(cat, "truth")
    assert len(images) == 25 and len(truths) == 25
    rows = list(csv.DictReader(open(DEMO / "flair1" / "index.csv", encoding="utf-8")))
    assert sorted(f"IMG_{r['patch_id']}" for r in rows) == [d.id for d in images]
    # the FLAIR-2 patch of another domain with the same zone name keeps its own ID
    other = [d for d in cat.by_role("image") if d.zone == "Z6_NU" and d.domain != ZONE[0] and d.patch]
    assert [d.id for d in other] == ["IMG_000473"] and "IMG_000473" not in [d.id for d in images]
    for t in truths:
        with rasterio.open(t.path) as ds:
            assert ds.crs.to_wkt().startswith("LOCAL_CS") and ds.crs.to_epsg() is None  # FLAIR-1's quirk, kept
        assert raster.describe(t.path).crs == raster.LAMBERT93
        assert cat.truth_of(next(d for d in images if d.patch == t.patch)).id == t.id


def test_zone_is_a_contiguous_512_m_square_at_the_index_csv_positions(cat):
    rows = {f"IMG_{r['patch_id']}": r for r in csv.DictReader(open(DEMO / "flair1" / "index.csv", encoding="utf-8"))}
    lefts, tops = [], []
    for img in _zone(cat, "image"):
        info = raster.describe(img.path)
        assert (info.width, info.height, info.count) == (512, 512, 5)
        left, bottom, right, top = info.bounds
        assert left == pytest.approx(float(rows[img.id]["ulx"]), abs=1e-6)
        assert top == pytest.approx(float(rows[img.id]["uly"]), abs=1e-6)
        lefts.append(left)
        tops.append(top)
    xs, ys = sorted(set(np.round(lefts, 3))), sorted(set(np.round(tops, 3)))
    assert len(xs) == 5 and len(ys) == 5 and np.allclose(np.diff(xs), 102.4) and np.allclose(np.diff(ys), 102.4)
    assert xs[-1] + 102.4 - xs[0] == pytest.approx(512.0) and ys[-1] - (ys[0] - 102.4) == pytest.approx(512.0)


def test_demo_card_names_its_training_zones_and_the_checkpoint_matches():
    card = cards.get_card("demo-unet-r18")
    assert card.demo is True and "DEMO" in card.title
    assert card.training["train_zones"] == ["Z4_UU", "Z5_UA"] and card.training["held_out_zone"] == "Z6_NU"
    assert "Z4_UU" in card.description and "Z5_UA" in card.description and "never saw" in card.description
    assert hashlib.sha256(card.checkpoint.read_bytes()).hexdigest() == card.sha256


def test_every_demo_prediction_is_of_an_unseen_patch_by_the_shipped_model(cat):
    card = cards.get_card("demo-unet-r18")
    preds = [d for d in cat.by_role("prediction") if d.extra.get("model") == card.id]
    assert {p.patch for p in preds} >= {d.patch for d in _zone(cat, "image")}
    for p in preds:
        assert p.zone not in card.training["train_zones"]
        assert p.extra["model_sha256"] == card.sha256, f"{p.id} was made by another checkpoint: rerun the script"
        assert "unseen" in p.title


def _flair1_miou(cm19: np.ndarray) -> tuple[float, float]:
    """FLAIR-1 protocol, written out: classes 13..19 merged into 13, mIoU over classes 1..12, OA over all."""
    merge = np.minimum(np.arange(19), 12)
    cm = np.zeros((13, 13), np.int64)
    np.add.at(cm, (merge[:, None].repeat(19, 1), merge[None, :].repeat(19, 0)), cm19)
    tp = np.diag(cm).astype(float)
    den = cm.sum(0) + cm.sum(1) - tp
    iou = np.where(den > 0, tp / np.where(den > 0, den, 1), np.nan)[:12]
    return float(np.nanmean(iou)), float(tp.sum() / cm.sum())


def test_story_opens_on_the_zone_and_its_miou_is_the_unseen_zone_score(cat, tmp_path, monkeypatch):
    from flair_viz.web import story

    monkeypatch.setenv("FLAIR_VIZ_METRICS", str(tmp_path / "metrics.parquet"))
    cm = np.zeros((19, 19), np.int64)
    preds = {p.patch: p for p in cat.by_role("prediction") if p.extra.get("model") == "demo-unet-r18"}
    for t in _zone(cat, "truth"):
        truth = rasterio.open(t.path).read(1).astype(np.int64)
        pred = rasterio.open(preds[t.patch].path).read(1).astype(np.int64)
        ok = (truth >= 1) & (truth <= 19) & (pred >= 1) & (pred <= 19)
        cm += np.bincount(((truth[ok] - 1) * 19 + pred[ok] - 1), minlength=361).reshape(19, 19)
    miou, oa = _flair1_miou(cm)
    figures = story.demo_figures(cat)
    assert figures.scored_zone == "D034_2021/Z6_NU" and figures.scored_patches == 25
    assert figures.miou == pytest.approx(miou, abs=1e-9) and figures.oa == pytest.approx(oa, abs=1e-9)
    steps = story.steps(cat, figures, ["demo-unet-r18"])
    assert steps[0].link["patch"] == figures.zone_mosaic == "ZONE_D034_2021_Z6_NU"
    assert cat.truth_of(cat.get(figures.zone_mosaic)) is not None
    assert "never saw" in steps[2].figure and f"{miou:.2f}" in steps[2].figure
