"""The correction loop in real Chromium: paint a class where the demo model is wrong, fine-tune, see it learnt.

Where the model is wrong is computed from its actual output on the demo patches (whatever the current
demo card is); the figure on the page is checked against an independent prediction of both models.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
import shapely
from pyproj import Transformer

from flair_viz.core import classes, raster
from flair_viz.core.catalog import default_catalog
from flair_viz.correct.store import read_file
from flair_viz.predict import cards, inference, models
from tests.helpers import open_map_page

pytestmark = pytest.mark.e2e

DEMO_PATCHES = ("084558", "000473", "034217", "050549")
MODEL = "demo-unet-r18"
BLOCK, INSET = 64, 8


def predict(model_id: str, ds) -> np.ndarray:
    loaded = models.load_model(cards.get_card(model_id), "cpu")
    data = raster.read(ds.path, inference.band_indexes(loaded.card, tuple(ds.bands), ds.id))
    return inference.classes_from_proba(inference.predict_proba_array(loaded, data))


def wrong_block():
    """(patch, row, col, truth class): a 64 px block of uniform truth that the demo model gets most wrong."""
    cat = default_catalog()
    best = None
    for pid in DEMO_PATCHES:
        ds = next(d for d in cat.by_role("image") if d.patch == pid)
        truth = cat.truth_of(ds)
        t = classes.to_flair1(raster.read(truth.path, 1), truth.nomenclature)
        p = predict(MODEL, ds)
        for r in range(BLOCK, 512 - 2 * BLOCK + 1, BLOCK // 2):  # away from the map's controls and edges
            for c in range(BLOCK, 512 - 2 * BLOCK + 1, BLOCK // 2):
                tb, pb = t[r:r + BLOCK, c:c + BLOCK], p[r:r + BLOCK, c:c + BLOCK]
                k = int(np.bincount(tb.ravel(), minlength=20)[1:].argmax()) + 1
                if (tb == k).mean() < 0.95:
                    continue
                wrong = float((pb != k).mean())
                if best is None or wrong > best[0]:
                    best = (wrong, ds, r, c, k)
    assert best is not None and best[0] > 0.5, f"the demo model is right almost everywhere: {best}"
    return best[1:]


def pixel_hits(pred: np.ndarray, geom, info, k: int) -> tuple[int, int]:
    """Pixels whose centre lies in ``geom`` and, of them, those predicted as ``k`` (shapely, not rasterio)."""
    rows, cols = np.mgrid[0:info.height, 0:info.width]
    xs = info.transform.c + (cols + 0.5) * info.transform.a
    ys = info.transform.f + (rows + 0.5) * info.transform.e
    inside = shapely.contains_xy(geom, xs, ys)
    return int(inside.sum()), int((pred[inside] == k).sum())


def test_paint_finetune_and_the_model_learns_it(live_app, page_and_traffic, artifacts_dir, monkeypatch):
    page, traffic = page_and_traffic
    ds, r, c, k = wrong_block()
    info = raster.describe(ds.path)
    to_ll = Transformer.from_crs(info.crs, "EPSG:4326", always_xy=True)
    corners = [(r + INSET, c + INSET), (r + INSET, c + BLOCK - INSET), (r + BLOCK - INSET, c + BLOCK - INSET),
               (r + BLOCK - INSET, c + INSET)]
    lonlat = [to_ll.transform(*(info.transform @ (cc, rr))) for rr, cc in corners]

    frame_loc = open_map_page(page, f"{live_app['app']}/Explore?patch={ds.patch}", "Explore")
    page.get_by_text("Paint corrections").first.click()
    page.get_by_text("Class to paint").first.wait_for(timeout=60_000)
    box = page.locator('[data-testid="stSelectbox"]').filter(has_text="Class to paint").first
    box.click()
    page.keyboard.type(f"{k} · {classes.BY_VALUE[k].name}")
    page.keyboard.press("Enter")
    draw = frame_loc.locator("a.leaflet-draw-draw-polygon")
    draw.wait_for(timeout=60_000)
    page.wait_for_timeout(1500)  # let the map settle on the patch before reading screen positions
    frame = page.locator("iframe[title='streamlit_folium.st_folium']").first.element_handle().content_frame()
    points = frame.evaluate("""(lls) => {
        const map = Object.values(window).find(v => v instanceof L.Map);
        return lls.map(ll => { const p = map.latLngToContainerPoint([ll[1], ll[0]]); return [p.x, p.y]; });
    }""", [list(p) for p in lonlat])
    container = frame_loc.locator(".leaflet-container").first.bounding_box()  # page coordinates of the map
    dx, dy = container["x"], container["y"]
    draw.click()
    for x, y in [*points, points[0]]:
        page.mouse.click(dx + x, dy + y)
        page.wait_for_timeout(300)
    page.get_by_text("shape(s) drawn").first.wait_for(timeout=60_000)
    page.get_by_role("button", name="Save corrections").click()
    page.get_by_text("Saved 1 correction(s)").first.wait_for(timeout=60_000)

    epochs = page.get_by_label("Epochs")
    epochs.fill("15")
    epochs.press("Enter")
    page.wait_for_timeout(1000)
    page.get_by_role("button", name="Apply: fine-tune on these corrections").click()
    page.get_by_text("is ready.").first.wait_for(timeout=300_000)
    page.screenshot(path=str(artifacts_dir / "corrections-finetuned.png"), full_page=True)
    text = page.get_by_text("Inside your corrections").first.inner_text()
    m = re.search(r"\((\d+) px\).*?(\d+) px \(.*?(\d+) px \(", text)
    assert m, text
    n_page, before_page, after_page = map(int, m.groups())
    new_id = re.search(r"by (\S+)\. These", text).group(1)

    # independent: the saved polygon, both models' whole-patch predictions, pixel centres inside it
    data = live_app["log"].parent
    (geom,) = read_file(data / "corrections.gpkg").geometry
    monkeypatch.setenv("FLAIR_VIZ_MODELS", str(data / "models"))
    n, before = pixel_hits(predict(MODEL, ds), geom, info, k)
    n2, after = pixel_hits(predict(new_id, ds), geom, info, k)
    assert n == n2 == n_page and n > 500
    assert (before_page, after_page) == (before, after)
    assert after - before >= 0.3 * n, (before, after, n)  # clearly more pixels match the painted class

    page.get_by_role("button", name="Swipe parent vs fine-tuned").click()
    for _ in range(600):
        if traffic.good_tiles(f"/predict/{new_id}/"):
            break
        page.wait_for_timeout(250)
    page.screenshot(path=str(artifacts_dir / "corrections-swipe.png"), full_page=True)
    assert traffic.good_tiles(f"/predict/{new_id}/"), "no tiles of the fine-tuned model"
    assert traffic.foreign() == []
    assert os.path.exists(data / "models" / f"{new_id}.safetensors")
