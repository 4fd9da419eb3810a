"""Change from predictions: the demo model predicts a real image and its SIMULATED later vintage; the
change and the "uncertain change" (low margin) are checked against a plain numpy count of the cached
predictions, and the predictions are made once."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio

from flair_viz.change import predicted, qml
from flair_viz.cli import main as cli
from flair_viz.core.catalog import Catalog
from flair_viz.core.errors import FlairVizError
from tests.helpers import DEMO

CATALOG = DEMO / "catalog.toml"
MODEL = "demo-unet-r18"


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("change-pred-cache")


@pytest.fixture()
def cache(shared_cache, monkeypatch):
    monkeypatch.setenv("FLAIR_VIZ_CACHE", str(shared_cache))
    monkeypatch.setenv("FLAIR_VIZ_DEVICE", "cpu")
    return shared_cache


def numpy_gap(proba: np.ndarray) -> np.ndarray:
    """top-1 minus top-2 of uint8 probabilities, renormalised per pixel, by sorting (not the library's running top-2)."""
    p = proba.astype(np.float64)
    s = np.sort(p, axis=0)
    total = p.sum(axis=0)
    return np.where(total > 0, (s[-1] - s[-2]) / np.where(total > 0, total, 1), 0)


def test_uncertain_change_equals_a_numpy_count_of_the_cached_predictions(cache, tmp_path, capsys):
    cat = Catalog.load(CATALOG)
    out = tmp_path / "out"
    assert cli.main(["change", "--model", MODEL, "IMG_000473", "IMG_000473_SIM2024", "--out", str(out),
                     "--catalog", str(CATALOG), "--margin-threshold", "0.3"]) == 0
    text = capsys.readouterr().out
    assert "SIMULATED" in text and "uncertain" in text
    u = json.loads((out / "uncertainty.json").read_text())
    assert u["margin_threshold"] == 0.3 and u["simulated"] and u["predicted_now"] == [True, True]

    (pa, qa, now_a), (pb, qb, now_b) = (predicted.cached_prediction(MODEL, predicted.resolve_image(i, cat))
                                        for i in ("IMG_000473", "IMG_000473_SIM2024"))
    assert (now_a, now_b) == (False, False)  # cached by the CLI run
    with rasterio.open(pa) as a, rasterio.open(pb) as b, rasterio.open(qa) as pqa, rasterio.open(qb) as pqb:
        ca, cb, gap_a, gap_b = a.read(1), b.read(1), numpy_gap(pqa.read()), numpy_gap(pqb.read())
        ha = abs(a.transform.a * a.transform.e) / 10_000
    changed = (ca != cb) & (ca > 0) & (cb > 0)
    unsure = changed & ((gap_a < 0.3) | (gap_b < 0.3))
    assert changed.any() and unsure.any() and (changed & ~unsure).any()
    assert u["changed_ha"] == pytest.approx(changed.sum() * ha, rel=1e-9)
    assert u["uncertain_changed_ha"] == pytest.approx(unsure.sum() * ha, rel=1e-9)
    assert u["sure_changed_ha"] == pytest.approx((changed & ~unsure).sum() * ha, rel=1e-9)
    with rasterio.open(out / "confidence.tif") as c:
        conf = c.read(1)
    np.testing.assert_array_equal(conf, np.where(unsure, 2, np.where(changed, 1, 0)))
    assert (out / "confidence.qml").exists() and (out / "change.qml").exists()
    assert pa.with_suffix(".qml").read_text() == qml.qml_text("class")  # the cached prediction opens coloured too


def test_a_stricter_threshold_counts_more_uncertain_change_without_predicting_again(cache):
    cat = Catalog.load(CATALOG)
    low = predicted.predictions_change(MODEL, "IMG_000473", "IMG_000473_SIM2024", catalog=cat, margin_threshold=0.1)
    high = predicted.predictions_change(MODEL, "IMG_000473", "IMG_000473_SIM2024", catalog=cat, margin_threshold=0.6)
    assert low.predicted_now == (False, False) or high.predicted_now == (False, False)
    ul, uh = low.uncertainty(), high.uncertainty()
    assert ul["changed_ha"] == uh["changed_ha"]
    assert ul["uncertain_changed_ha"] < uh["uncertain_changed_ha"]
    for u in (ul, uh):
        assert u["sure_changed_ha"] + u["uncertain_changed_ha"] == pytest.approx(u["changed_ha"])
        art = low.result.zan()["artificialisation_ha"]
        assert u["zan_sure"]["artificialisation_ha"] + u["zan_uncertain"]["artificialisation_ha"] == pytest.approx(art)


@pytest.mark.parametrize("args, needle", [
    (["IMG_000473", "IMG_000473", "--margin-threshold", "0.2"], "Both image vintages"),
    (["IMG_000473", "IMG_000473_SIM2024", "--margin-threshold", "1.5"], "outside 0..1"),
    (["MSK_000473", "IMG_000473_SIM2024"], "needs two images"),
])
def test_bad_prediction_pairs_are_clear_errors(cache, tmp_path, capsys, args, needle):
    assert cli.main(["change", "--model", MODEL, *args, "--out", str(tmp_path / "o"), "--catalog", str(CATALOG)]) == 2
    err = capsys.readouterr().err
    assert needle in err and "fix:" in err


def test_images_on_another_grid_are_refused_by_name(cache, tmp_path):
    cat = Catalog.load(CATALOG)
    with pytest.raises(FlairVizError) as e:  # two patches of different places
        predicted.predictions_change(MODEL, "IMG_000473", "IMG_084558", catalog=cat)
    assert "do not overlap" in e.value.problem


def test_simulated_image_vintage_is_labelled_and_differs_only_where_its_simulated_truth_changed():
    cat = Catalog.load(CATALOG)
    sim, img = cat.get("IMG_000473_SIM2024"), cat.get("IMG_000473")
    assert sim.simulated and "SIMULATED" in sim.title and "simulated" in sim.path.name and sim.patch is None
    with rasterio.open(sim.path) as s, rasterio.open(img.path) as i, \
            rasterio.open(cat.get("MSK_000473").path) as b, rasterio.open(cat.get(sim.extra["truth"]).path) as a:
        assert s.transform == i.transform and s.count == i.count
        differs = (s.read() != i.read()).any(axis=0)
        changed = b.read(1) != a.read(1)
    assert differs.any() and not (differs & ~changed).any()


def test_the_page_shows_every_figure_of_a_computed_run_explained_and_its_map(cache, tmp_path, monkeypatch):
    """A run already on disk (the command the page would start) is shown at once: the figures are the ones the
    command wrote, each with its help, none in brackets, with the note that says what a hectare and
    "uncertain" are, and no error."""
    from streamlit.testing.v1 import AppTest

    import ui.common
    from flair_viz.change import views
    from tests.helpers import REPO

    monkeypatch.setenv("FLAIR_VIZ_CATALOG", str(CATALOG))
    monkeypatch.setenv("FLAIR_VIZ_DATA", str(tmp_path / "data"))
    monkeypatch.setattr(ui.common, "tiles_url", lambda: "http://127.0.0.1:9")  # maps are not fetched in AppTest
    monkeypatch.setattr(ui.common, "server_models", lambda base: [{"id": MODEL, "demo": True}])
    cat = Catalog.load(CATALOG)
    run = views.predictions_run(MODEL, cat.get("IMG_000473"), cat.get("IMG_000473_SIM2024"),
                                predicted.DEFAULT_MARGIN_THRESHOLD, CATALOG)
    assert cli.main(list(run.argv)) == 0 and run.done()
    u = json.loads((run.out / "uncertainty.json").read_text())
    s = json.loads((run.out / "summary.json").read_text())

    at = AppTest.from_file(str(REPO / "pages" / "3_Change.py"), default_timeout=60).run()
    at.radio(key="change_view").set_value("predictions").run()
    assert not at.exception and not at.error
    shown = {m.label: m for m in at.metric}
    assert shown["Changed"].value == f"{u['changed_ha']:.4f} ha"
    assert shown["Sure change"].value == f"{u['sure_changed_ha']:.4f} ha"
    assert shown["Uncertain change"].value == f"{u['uncertain_changed_ha']:.4f} ha"
    assert shown["Artificialisation, all change"].value == f"{s['zan']['artificialisation_ha']:.4f} ha"
    assert all(m.help and "(" not in m.value for m in at.metric)
    assert any("How to read these numbers" in md.value for md in at.markdown)
