"""Streamlit AppTest for the home and Explore pages (maps themselves are checked in the browser test)."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from flair_viz.core.catalog import Catalog
from tests.helpers import DEMO_CATALOG, REPO


def run(page: str) -> AppTest:
    at = AppTest.from_file(str(REPO / page), default_timeout=120)
    return at.run()


def test_home_tells_the_story_and_credits_ign(tile_server):
    at = run("app.py")
    assert not at.exception
    text = " ".join(m.value for m in at.markdown)
    for word in ("ZAN", "CoSIA", "OCS GE", "FLAIR"):
        assert word in text
    assert any("Etalab" in c.value for c in at.caption)


def test_explore_lists_real_patches_and_switches_patch(tile_server):
    at = run("pages/1_Explore.py")
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    patch = at.selectbox(key="explore_scene")
    for pid in ("000473", "084558", "034217", "050549"):  # options are shown as labels
        assert any(pid in o for o in patch.options), patch.options
    patch.set_value("IMG_084558").run()
    assert not at.exception
    # the patch and that it has a ground truth, in words: no raw dataset ID (MSK_...) where a title would do
    assert any("084558" in c.value and "with its ground truth" in c.value and "MSK_" not in c.value
               for c in at.caption), [c.value for c in at.caption]
    assert [o.split(" ")[0] for o in at.sidebar.radio[0].options] == ["RGB", "IRC", "Elevation"]
    patch.set_value("BDORTHO_STACK").run()  # a [[stack]]: one image of dalles, not a mosaic of listed patches
    assert not at.exception
    assert any("made of its dalles" in c.value and "pick one patch" not in c.value for c in at.caption), \
        [c.value for c in at.caption]


def test_explore_deep_link_opens_the_requested_patch(tile_server):
    at = AppTest.from_file(str(REPO / "pages/1_Explore.py"), default_timeout=120)
    at.session_state["explore"] = {"patch": "034217"}
    at.run()
    assert not at.exception
    assert at.selectbox(key="explore_scene").value == "IMG_034217"


def test_explore_layers_for_a_confusion_click_through():
    """Deep link from Metrics: the confusion layer comes first, named with the protocol's classes."""
    from flair_viz.core.catalog import Catalog
    from flair_viz.core.classes import protocol_names
    from flair_viz.web import explore

    cat = Catalog.load(DEMO_CATALOG)
    scene = explore.find_scene(explore.list_scenes(cat), "050549")
    pred = next(d for d in cat.by_role("prediction") if d.patch == "050549")
    link = {"confusion": [3, 2], "pred_id": pred.id, "truth_id": "MSK_050549", "protocol": "flair1"}
    layers = explore.scene_layers(scene, cat, "http://t", models=["m"], deep_link=link)
    name, url = layers.class_layers[0]
    names = protocol_names("flair1")
    assert name == f"Confusion: truth {names[2]} → predicted {names[1]}"
    assert url.startswith(f"http://t/datasets/MSK_050549/confusion/{pred.id}/tiles/WebMercatorQuad/")
    assert "truth_class=3" in url and "pred_class=2" in url and "protocol=flair1" in url
    # without a link: ground truth left, live model right
    plain = explore.scene_layers(scene, cat, "http://t", models=["m"])
    assert [n for n, _ in plain.class_layers] == ["Ground truth", "Prediction · m"]
    ab = explore.scene_layers(scene, cat, "http://t", models=["a", "b"])
    assert [n for n, _ in ab.class_layers][:2] == ["Prediction · a", "Prediction · b"]


def test_patchless_mosaic_predictions_join_the_images_they_cover(tmp_path):
    """A batch VRT mosaic has no patch ID; it must still appear on the images it covers, and only those."""
    import shutil

    from flair_viz.core.catalog import Catalog, Dataset
    from flair_viz.web import explore

    demo = Catalog.load(DEMO_CATALOG)
    src = demo.get("MSK_000473").path
    shutil.copy(src, tmp_path / "mosaic.tif")
    cat = Catalog(tmp_path)
    for ds_id in ("IMG_000473", "IMG_084558"):
        cat.add(Dataset(**{**demo.get(ds_id).__dict__, "outside_root": True}))
    cat.add(Dataset(id="MOSAIC_m", path=tmp_path / "mosaic.tif", role="prediction", extra={"model": "m"}))
    scenes = {s.image.id: s for s in explore.list_scenes(cat)}
    assert [p.id for p in scenes["IMG_000473"].predictions] == ["MOSAIC_m"]
    assert scenes["IMG_084558"].predictions == ()
    # with a per-patch prediction of the same model, the mosaic is not listed a second time
    cat.add(Dataset(id="PRED_000473_m", path=tmp_path / "mosaic.tif", role="prediction", patch="000473",
                    extra={"model": "m"}))
    scenes = {s.image.id: s for s in explore.list_scenes(cat)}
    assert [p.id for p in scenes["IMG_000473"].predictions] == ["PRED_000473_m"]


def test_explore_offers_an_online_basemap_only_when_configured(monkeypatch, tile_server):
    at = run("pages/1_Explore.py")
    assert not [c for c in at.checkbox if c.key == "explore_basemap"]
    monkeypatch.setenv("FLAIR_VIZ_BASEMAP_URL", "http://127.0.0.1:9/{z}/{x}/{y}.png")
    at = run("pages/1_Explore.py")
    box = next(c for c in at.checkbox if c.key == "explore_basemap")
    assert box.value is False  # off by default even when configured
    box.check().run()
    assert not at.exception


def test_explore_filters_patches_by_year(tile_server):
    at = run("pages/1_Explore.py")
    year = next(m for m in at.sidebar.multiselect if m.label == "Year")
    cat = Catalog.load(DEMO_CATALOG)
    assert year.options == sorted({d.vintage[:4] for d in cat.by_role("image") if d.vintage})  # from the catalog
    year.set_value(["2020"]).run()
    assert not at.exception
    options = at.selectbox(key="explore_scene").options
    assert len(options) == 2 and all("2020" in o for o in options)  # D036_2020 and D074_2020
