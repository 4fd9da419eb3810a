"""``GET /datasets/{id}/candidates/{model_id}``: the tile server scores a scene's cells for the Annotate page.

Checked against an independent numpy computation on the model's own probabilities, with a model of
5 classes (fewer than 19), so the class count must reach the entropy through the card.
"""

from __future__ import annotations

import numpy as np
import pytest

from flair_viz import annotate as A
from flair_viz.annotate import routes
from flair_viz.core import classes, raster
from flair_viz.core.catalog import Catalog
from tests.helpers import DEMO_CATALOG, app_client
from tests.model_fixtures import make_model

IMG = "IMG_000473"


@pytest.fixture()
def five_class_client(model_dir):
    make_model(model_dir, "five", classes=5)
    routes.clear_cache()
    yield app_client(DEMO_CATALOG)
    routes.clear_cache()


def test_candidates_route_scores_cells_like_numpy_with_the_models_class_count(five_class_client) -> None:
    resp = five_class_client.get(f"/datasets/{IMG}/candidates/five", params={"cell_px": 256})
    assert resp.status_code == 200, resp.text
    doc = resp.json()
    assert doc["crs"]["properties"]["name"] == "EPSG:2154"
    cells = A.cells_from_geojson(doc)
    assert len(cells) == 4 and list(cells["cell_m"]) == [51.2] * 4

    cat = Catalog.load(DEMO_CATALOG)
    pred = A.predict_scene(cat, IMG, "five")
    assert pred.n_classes == 5 and pred.proba.shape[0] == 19 and float(pred.proba[5:].max()) == 0.0
    p = pred.proba[:5].astype(np.float64)
    p = p / p.sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.where(p > 0, p * np.log(p), 0).sum(0) / np.log(5)
    truth_ds = cat.truth_of(cat.get(IMG))
    truth = classes.to_flair1(raster.read(truth_ds.path, 1), truth_ds.nomenclature)
    best = p.argmax(0) + 1
    info = raster.describe(cat.get(IMG).path)
    x0, y0 = info.transform.c, info.transform.f
    for row in cells.itertuples():
        sl = np.s_[row.row * 256:(row.row + 1) * 256, row.col * 256:(row.col + 1) * 256]
        assert row.entropy == pytest.approx(ent[sl].mean(), abs=1e-5)
        has = truth[sl] != 0
        assert row.gt == pytest.approx((best[sl][has] != truth[sl][has]).mean(), abs=1e-9)
        assert np.isnan(row.models)
        assert row.geometry.bounds == pytest.approx((x0 + row.col * 51.2, y0 - (row.row + 1) * 51.2,
                                                     x0 + (row.col + 1) * 51.2, y0 - row.row * 51.2))
    # the page re-ranks what the server sent, exactly as it would the library's own frame
    direct = A.score_dataset(cat, IMG, pred, cell_m=51.2)
    got, want = A.rank(cells, top=4), A.rank(direct, top=4)
    assert list(got["cell_id"]) == list(want["cell_id"])
    np.testing.assert_allclose(got["score"], want["score"], atol=1e-9)


def test_candidates_route_errors_are_json_by_condition(five_class_client) -> None:
    cases = {
        f"/datasets/{IMG}/candidates/nope": (404, "Unknown model"),
        f"/datasets/{IMG}/candidates/five?cell_px=100": (400, "not a FLAIR sub-grid"),
        "/datasets/MSK_000473/candidates/five": (400, "aerial images"),
        "/datasets/NOPE_1/candidates/five": (404, "NOPE_1"),
    }
    for url, (status, words) in cases.items():
        resp = five_class_client.get(url)
        assert resp.status_code == status, (url, resp.text)
        body = resp.json()
        assert words in body["detail"] and body["fix"], (url, body)


def test_candidates_are_computed_once_per_inputs(five_class_client, monkeypatch) -> None:
    calls = []
    real = routes.score_scene

    def counting(*args, **kwargs):
        calls.append(args[1:3])
        return real(*args, **kwargs)

    monkeypatch.setattr(routes, "score_scene", counting)
    url = f"/datasets/{IMG}/candidates/five"
    first = five_class_client.get(url, params={"cell_px": 512}).json()
    assert five_class_client.get(url, params={"cell_px": 512}).json() == first
    assert len(calls) == 1
    assert len(five_class_client.get(url, params={"cell_px": 128}).json()["features"]) == 16
    assert len(calls) == 2  # another grid is another result
