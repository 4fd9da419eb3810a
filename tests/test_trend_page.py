"""The Change page's series view (time slider, trend chart) and change-from-predictions view, in AppTest."""

from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

from flair_viz import change
from flair_viz.core import config
from flair_viz.core.catalog import Catalog
from flair_viz.web import change_trend
from tests.helpers import DEMO, REPO

CATALOG = DEMO / "catalog.toml"


@pytest.fixture()
def page(monkeypatch):
    import ui.common

    monkeypatch.setenv("FLAIR_VIZ_CATALOG", str(CATALOG))
    monkeypatch.setenv("FLAIR_VIZ_DEVICE", "cpu")
    monkeypatch.setattr(ui.common, "tiles_url", lambda: "http://127.0.0.1:9")  # maps are not fetched in AppTest
    monkeypatch.setattr(ui.common, "server_models", lambda base: [{"id": "demo-unet-r18", "demo": True}])
    return AppTest.from_file(str(REPO / "pages" / "3_Change.py"), default_timeout=180)


def test_time_slider_moves_the_figures_over_the_series(page):
    cat = Catalog.load(CATALOG)
    trend = change.compute_trend([d.id for d in cat.series("gers")], catalog=cat)
    at = page.run()
    at.radio(key="change_view").set_value("series").run()
    assert not at.exception and not at.error
    slider = at.select_slider(key="change_time")
    assert list(slider.options) == ["2019", "2022", "2025"]
    seen = []
    for i, stop in enumerate(slider.options, start=1):
        at.select_slider(key="change_time").set_value(stop).run()
        assert not at.exception
        z = trend.intervals[i - 1].zan()
        shown = {m.label: m.value for m in at.metric}
        assert shown["Artificialisation"] == f"{z['artificialisation_ha']:.4f} ha"
        assert shown["De-artificialisation"] == f"{z['deartificialisation_ha']:.4f} ha"
        cum = sum(r.zan()["net_artificialisation_ha"] for r in trend.intervals[:i])
        assert shown["Net since the first vintage"] == f"{cum:.4f} ha"
        assert any("SIMULATED" in w.value for w in at.warning)
        seen.append(shown["Artificialisation"])
    assert len(set(seen)) >= 2  # the figures really move with the slider


def test_trend_figure_highlights_the_selected_interval():
    cat = Catalog.load(CATALOG)
    table = change.compute_trend([d.id for d in cat.series("gers")], catalog=cat).table()
    fig = change_trend.trend_figure(table, 2)
    art = fig.data[0]
    assert list(art.y) == list(table[table["region"] == "(all)"]["artificialisation_ha"])
    assert [c.endswith(",1.0)") for c in art.marker.color] == [False, True, False]
    assert "selected: SIMULATED 2019→2022" in fig.layout.title.text
    assert list(fig.data[2].y) == pytest.approx(list(table["cumulative_net_ha"]))


def test_predictions_view_runs_the_cli_and_shows_its_figures(page):
    at = page.run()
    at.radio(key="change_view").set_value("predictions").run()
    assert not at.exception and not at.error
    assert any("SIMULATED image vintage" in w.value for w in at.warning)
    assert not at.metric  # nothing is predicted before the button
    at.button(key="change_predict").click().run(timeout=600)
    assert not at.exception and not at.error, [e.value for e in at.error]
    shown = {m.label: m.value for m in at.metric}
    out = next((config.user_data_dir() / "change" / "from_predictions").iterdir())
    u = json.loads((out / "uncertainty.json").read_text())
    assert shown["Uncertain change"] == f"{u['uncertain_changed_ha']:.4f} ha"
    assert shown["Sure change"] == f"{u['sure_changed_ha']:.4f} ha"
    assert u["uncertain_changed_ha"] + u["sure_changed_ha"] == pytest.approx(u["changed_ha"])


def test_what_the_change_page_imports_never_loads_torch():
    """Change from predictions runs the CLI in a subprocess: the UI process stays torch-free."""
    import subprocess
    import sys

    code = ("import sys; import ui.common, flair_viz.change, flair_viz.change.predicted, flair_viz.web.change_trend, "
            "flair_viz.web.change_map, flair_viz.web.charts; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"
