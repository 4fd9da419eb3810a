"""What the Change page shows, as data (from-to view, flows, totals), the change COG, and the map pieces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from flair_viz import change
from flair_viz.change import views
from flair_viz.core import classes
from flair_viz.web import change_map
from tests.helpers import default_model_id

DEMO = Path(__file__).resolve().parent.parent / "data" / "demo"
BEFORE = DEMO / "flair" / "D036_2020" / "Z17_UA" / "msk" / "MSK_084558.tif"
AFTER = DEMO / "simulated" / "MSK_084558_simulated_2023.tif"


@pytest.fixture(scope="module")
def pair():
    with rasterio.open(BEFORE) as b, rasterio.open(AFTER) as a:
        before, after, t = b.read(1), a.read(1), b.transform
    ha = abs(t.a * t.e) / 10_000
    m = np.zeros((19, 19))
    for i in range(1, 20):
        for j in range(1, 20):
            m[i - 1, j - 1] = np.count_nonzero((before == i) & (after == j)) * ha
    return before, after, m


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("chg") / "change.tif"
    return change.compute_change(BEFORE, AFTER, change_cog=out)


def test_from_to_view_keeps_present_classes_and_hides_the_diagonal(result, pair):
    _, _, m = pair
    present = [i for i in range(19) if m[i].sum() > 0 or m[:, i].sum() > 0]
    names, shown = views.from_to_view(result, hide_diagonal=True)
    assert names == [classes.FLAIR1_CLASSES[i].name for i in present]
    off = m.copy()
    np.fill_diagonal(off, 0)
    np.testing.assert_allclose(shown, off[np.ix_(present, present)], rtol=1e-12)
    _, with_diag = views.from_to_view(result, hide_diagonal=False)
    np.testing.assert_allclose(np.trace(with_diag), np.trace(m), rtol=1e-12)


def test_main_flows_are_the_largest_changes_with_their_zan_flow(result, pair):
    _, _, m = pair
    off = m.copy()
    np.fill_diagonal(off, 0)
    flows = views.main_flows(result, "2020", "2023", n=5)
    largest = np.sort(off[off > 0])[::-1][:5]
    assert len(largest) >= 2  # the simulated vintage holds several kinds of change
    np.testing.assert_allclose(sorted(flows.hectares, reverse=True), largest, rtol=1e-12)
    group = result.grouping.group_of()
    for s, t, code in zip(flows.source, flows.target, flows.flow):
        b_name, a_name = flows.labels[s].rsplit(" (", 1)[0], flows.labels[t].rsplit(" (", 1)[0]
        b, a = (next(c.value for c in classes.FLAIR1_CLASSES if c.name == n) for n in (b_name, a_name))
        want = (change.FLOW_ARTIFICIALISATION if (group[b], group[a]) == ("natural", "artificial") else
                change.FLOW_DEARTIFICIALISATION if (group[b], group[a]) == ("artificial", "natural") else
                change.FLOW_OTHER)
        assert code == want
    assert flows.labels[flows.source[0]].endswith("(2020)") and flows.labels[flows.target[0]].endswith("(2023)")


def test_totals_and_changed_classes(result, pair):
    before, after, m = pair
    table = views.totals_table(result)
    np.testing.assert_allclose(table["before (ha)"].sum(), m.sum(), rtol=1e-12)
    np.testing.assert_allclose(table["net change (ha)"].to_numpy(), (m.sum(axis=0) - m.sum(axis=1))[table.index],
                               rtol=1e-9, atol=1e-12)
    changed = (before != after) & (before > 0) & (after > 0)
    assert views.changed_to(result) == sorted(set(after[changed].tolist()))


def test_change_cog_is_a_tiled_cog_with_the_class_palette_and_the_changed_pixels(result, pair):
    before, after, _ = pair
    with rasterio.open(result.outputs["change_cog"]) as ds:
        assert ds.profile["tiled"] and ds.overviews(1) and ds.nodata == 0
        assert ds.colormap(1)[1][:3] == classes.BY_VALUE[1].rgb
        np.testing.assert_array_equal(ds.read(1), np.where((before != after) & (before > 0) & (after > 0), after, 0))
    assert not [p for p in Path(result.outputs["change_cog"]).parent.iterdir() if p.name.startswith(".")]


def test_map_pieces_use_the_engines_flow_colours():
    html = change_map.flow_legend_html()
    for code, name in change.FLOW_NAMES.items():
        assert f"rgb{change.FLOW_COLORS[code][:3]}" in html and name in html
    url = change_map.change_tile_url("A", "B", "class", "http://t")
    assert url.startswith("http://t/change/A/B/tiles/WebMercatorQuad/{z}/{x}/{y}.png?") and "mode=class" in url


# -- change from predictions: the run the page's choices stand for ---------------------------------
def _demo_images():
    from flair_viz.core.catalog import Catalog

    cat = Catalog.load(DEMO / "catalog.toml")
    return cat, cat.get("IMG_000473"), cat.get("IMG_000473_SIM2024")


def test_default_images_are_the_demo_pair_when_present():
    ids = ["IMG_A", "IMG_000473_SIM2024", "IMG_B", "IMG_000473"]
    assert views.default_images(ids) == (ids.index("IMG_000473"), ids.index("IMG_000473_SIM2024"))
    assert views.default_images(["IMG_A", "IMG_B", "IMG_C"]) == (0, 1)
    assert views.default_images(["IMG_A"]) == (0, 0)


def test_model_labels_name_the_demo_models():
    cards = [{"id": "m1", "demo": True}, {"id": "m2"}]
    assert views.model_labels(cards) == {"m1": "m1 (DEMO)", "m2": "m2"}
    first = default_model_id()  # what the page offers before the tile server answers
    assert views.model_labels([]) == {first: first}
    assert views.model_labels([], fallback="m9") == {"m9": "m9"}


def test_predictions_run_is_one_folder_per_choice_and_its_command_parses_back():
    import shlex

    from flair_viz.cli.main import build_parser

    cat, a, b = _demo_images()
    run = views.predictions_run("demo-unet-r18", a, b, 0.2, cat.source)
    assert views.predictions_run("demo-unet-r18", a, b, 0.20001, cat.source).out == run.out  # 4 decimals, as passed
    others = {views.predictions_run("demo-unet-r18", a, b, 0.3, cat.source).out,
              views.predictions_run("other", a, b, 0.2, cat.source).out,
              views.predictions_run("demo-unet-r18", b, a, 0.2, cat.source).out}
    assert run.out not in others and len(others) == 3
    args = build_parser().parse_args(shlex.split(run.command)[1:])
    assert (args.command, args.model, args.before, args.after) == ("change", "demo-unet-r18", a.id, b.id)
    assert (args.margin_threshold, args.out, args.catalog) == (0.2, str(run.out), str(cat.source))
    assert not run.done()


def test_a_failing_run_raises_the_commands_own_condition_in_the_parent(tmp_path):
    """The page runs the command in a child process; its error comes back as the same condition, problem and fix."""
    from flair_viz.cli import main as cli
    from flair_viz.core import child
    from flair_viz.core.errors import InvalidInput

    cat, a, b = _demo_images()
    with pytest.raises(InvalidInput) as ref:
        change.predictions_change("demo-unet-r18", a.path, b.path, catalog=cat, margin_threshold=1.5)
    argv = ["change", "--model", "demo-unet-r18", a.id, b.id, "--out", str(tmp_path / "out"),
            "--margin-threshold", "1.5", "--catalog", str(cat.source)]
    with pytest.raises(InvalidInput) as got:
        child.run(cli.run, {"argv": argv}, what="the test run", fix="none")
    assert type(got.value) is type(ref.value) and (got.value.problem, got.value.fix) == (ref.value.problem,
                                                                                      ref.value.fix)


# -- the pair list: like with like ----------------------------------------------------------------------
def _catalog(tmp_path, rows: list[tuple[str, str, str, str | None]]):
    """A catalog of class rasters of one patch: (id, role, vintage, model) rows, every file the same mask."""
    from flair_viz.core.catalog import Catalog

    lines = [f'data_root = "{DEMO.as_posix()}"']
    for ds_id, role, vintage, model in rows:
        lines += ["[[dataset]]", f'id = "{ds_id}"', f'path = "{BEFORE.relative_to(DEMO).as_posix()}"',
                  f'role = "{role}"', 'patch = "000001"', f'vintage = "{vintage}"']
        if model:
            lines += ["[dataset.extra]", f'model = "{model}"']
    path = tmp_path / "catalog.toml"
    path.write_text("\n".join(lines) + "\n")
    return Catalog.load(path)


def test_the_pair_list_offers_only_truth_to_truth_and_same_model_predictions(tmp_path):
    rows = [("T1", "truth", "2019", None), ("T2", "truth", "2022", None), ("T3", "truth", "2025", None),
            ("PA1", "prediction", "2019", "model-a"), ("PA2", "prediction", "2022", "model-a"),
            ("PB2", "prediction", "2022", "model-b"), ("PX3", "prediction", "2025", None)]
    cat = _catalog(tmp_path, rows)
    by_id = {r[0]: r for r in rows}
    expected = set()
    for b in rows:  # written out from the rows, not from the library's rule
        for a in rows:
            if b[2] < a[2] and b[1] == a[1] and (b[1] == "truth" or (b[3] is not None and b[3] == a[3])):
                expected.add((b[0], a[0]))
    got = {(p.before.id, p.after.id) for p in change.list_pairs(cat)}
    assert got == expected == {("T1", "T2"), ("T1", "T3"), ("T2", "T3"), ("PA1", "PA2")}
    for p in change.list_pairs(cat):
        kind = "ground truth" if by_id[p.before.id][1] == "truth" else "predictions of model-a"
        assert p.label == f"{p.before.vintage} → {p.after.vintage} · {kind} · 000001"
    # what a hand-picked mixed pair mixes, in words
    from flair_viz.change.pairs import mixed_reason

    assert "every pixel the model got wrong" in mixed_reason(cat.get("PA1"), cat.get("T2"))
    assert "model-a and model-b" in mixed_reason(cat.get("PA1"), cat.get("PB2"))
    assert "does not record its model" in mixed_reason(cat.get("PA2"), cat.get("PX3"))
    assert mixed_reason(cat.get("T1"), cat.get("T3")) is None and mixed_reason(cat.get("PA1"), cat.get("PA2")) is None


def test_the_demo_pair_list_drops_its_prediction_to_simulated_truth_pairs():
    from flair_viz.core.catalog import Catalog

    cat = Catalog.load(DEMO / "catalog.toml")
    pairs = change.list_pairs(cat)
    assert pairs and all(p.before.role == p.after.role for p in pairs)
    # the demo has predictions and later simulated truths of the same patch: the pairs that were dropped
    mixed = [(p, t) for p in cat.by_role("prediction") for t in cat.by_role("truth")
             if p.patch and p.patch == t.patch and p.vintage and t.vintage and p.vintage < t.vintage]
    assert mixed
    assert not {(p.id, t.id) for p, t in mixed} & {(q.before.id, q.after.id) for q in pairs}


# -- tables and texts in plain words ----------------------------------------------------------------------
def test_the_trend_table_shows_plain_words_and_no_internal_columns():
    from flair_viz.core.catalog import Catalog

    cat = Catalog.load(DEMO / "catalog.toml")
    table = change.compute_trend([d.id for d in change.catalog_series(cat, "gers")], catalog=cat).table()
    shown = views.trend_table_view(table)
    assert {"region_id", "before_source", "after_source", "interval", "region"} <= set(table.columns)
    assert not {c for c in shown.columns if "_" in c}  # no snake_case column name reaches the page
    assert "Region" not in shown.columns  # one "(all)" region: no column for it
    assert list(shown["Interval"]) == list(table["label"])
    np.testing.assert_allclose(shown["Artificialisation (ha)"], table["artificialisation_ha"])
    np.testing.assert_allclose(shown["Net since the first vintage (ha)"], table["cumulative_net_ha"])
    assert list(shown["Before is"]) == [{"truth": "ground truth", "simulated": "SIMULATED ground truth"}[s]
                                        for s in table["before_source"]]


def test_the_region_table_drops_the_internal_index():
    rows = [{"region": 1, "name": "Auch", "area_ha": 2.0, "changed_ha": 0.5, "artificialisation_ha": 0.25,
             "deartificialisation_ha": 0.0, "net_artificialisation_ha": 0.25},
            {"region": 0, "name": "(outside every region)", "area_ha": 1.0, "changed_ha": 0.0,
             "artificialisation_ha": 0.0, "deartificialisation_ha": 0.0, "net_artificialisation_ha": 0.0}]
    shown = views.region_table_view(rows)
    assert list(shown.columns) == ["Region", "Area compared (ha)", "Changed (ha)", "Artificialisation (ha)",
                                   "De-artificialisation (ha)", "Net artificialisation (ha)"]
    assert list(shown["Region"]) == ["Auch", "(outside every region)"] and shown["Changed (ha)"].sum() == 0.5


def test_the_mask_check_says_what_was_checked_and_how_far_a_mask_of_another_place_lies(tmp_path):
    from flair_viz.change.masks import MaskAgreement

    with rasterio.open(BEFORE) as src:
        profile, (left, bottom, right, top) = src.profile, src.bounds
    far = tmp_path / "far.tif"  # a mask 3 km east and 4 km north of the pair's corner: 5 km away
    t = rasterio.transform.from_origin(right + 3000, top + 4000 + 10, 1, 1)
    with rasterio.open(far, "w", **{**profile, "width": 10, "height": 10, "transform": t}) as dst:
        dst.write(np.ones((1, 10, 10), dtype=np.uint8))
    away = MaskAgreement("far.tif", 100, 0, 0, 0)
    near = MaskAgreement("near.tif", 50, 40, 30, 24)
    only_far = views.mask_check([away], [far], (left, bottom, right, top))
    assert "1 change mask listed" in only_far.checked and "nothing to compare" in only_far.found
    assert "5.0 km from this pair" in only_far.lines[0] and "100 changed pixels" in only_far.lines[0]
    both = views.mask_check([away, near], [far, BEFORE], (left, bottom, right, top))
    assert "24 of 30 changed mask pixels on this pair (80.0%)" in both.found
    assert both.lines[1].startswith("near.tif: 24 of its 30") and "10 more lie outside" in both.lines[1]


def test_prediction_figures_explain_every_number_and_add_up():
    u = {"margin_threshold": 0.2, "changed_ha": 0.12, "sure_changed_ha": 0.05, "uncertain_changed_ha": 0.07,
         "zan_sure": {"artificialisation_ha": 0.02, "deartificialisation_ha": 0.0}}
    s = {"valid_area_ha": 1.05, "overlap_area_ha": 1.05, "zan": {"artificialisation_ha": 0.09,
                                                                  "deartificialisation_ha": 0.001},
         "grid": {"resolution_m": [0.2, -0.2], "pixel_area_m2": 0.04}}
    rows = views.prediction_figures(u, s)
    shown = {f.label: f for row in rows for f in row}
    assert shown["Changed"].value == "0.1200 ha" and shown["Sure change"].value == "0.0500 ha"
    assert shown["Uncertain change"].value == "0.0700 ha" and "0.20" in shown["Uncertain change"].help
    assert [f.value for f in rows[1]] == ["0.0900 ha", "0.0200 ha", "0.0010 ha", "0.0000 ha"]
    assert all(f.help for row in rows for f in row)  # every number says what it is
    assert not any("(" in f.value for row in rows for f in row)  # no unexplained number in brackets
    notes = views.prediction_notes(u, s)
    assert "0.20 m × 0.20 m = 0.04 m²" in notes and "10,000 m²" in notes and "less than 0.20" in notes


# -- the map of a change from predictions ----------------------------------------------------------------
def _confidence(tmp_path, shape=(96, 128)):
    """A confidence raster in Lambert-93 (0.2 m pixels, in the demo's place): blocks of sure and uncertain change."""
    rng = np.random.default_rng(7)
    codes = np.kron(rng.integers(0, 3, size=(shape[0] // 8, shape[1] // 8)), np.ones((8, 8))).astype(np.uint8)
    t = rasterio.transform.from_origin(961436.8, 6329262.4, 0.2, 0.2)
    path = tmp_path / "confidence.tif"
    with rasterio.open(path, "w", driver="GTiff", width=shape[1], height=shape[0], count=1, dtype="uint8",
                       crs="EPSG:2154", transform=t, nodata=0) as dst:
        dst.write(codes, 1)
    return path, codes, t


def test_confidence_overlays_put_each_pixel_where_it_is_on_the_ground(tmp_path):
    """Each overlay pixel's centre, taken from the lon/lat bounds as Leaflet stretches the image (linear in Web
    Mercator), projected back to Lambert-93 with pyproj, falls on a source pixel of the same code."""
    from pyproj import Transformer

    path, codes, t = _confidence(tmp_path)
    (west, south, east, north), layers = change_map.confidence_overlays(path)
    to_merc = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
    to_l93 = Transformer.from_crs("EPSG:3857", "EPSG:2154", always_xy=True)
    (x0, y0), (x1, y1) = to_merc.transform(west, north), to_merc.transform(east, south)
    h, w = layers[1].shape[:2]
    rows, cols = np.mgrid[0:h, 0:w]
    mx, my = x0 + (cols + 0.5) * (x1 - x0) / w, y0 + (rows + 0.5) * (y1 - y0) / h
    ex, ny = to_l93.transform(mx.ravel(), my.ravel())
    c, r = ~t @ (np.asarray(ex), np.asarray(ny))
    c, r = np.floor(c).astype(int), np.floor(r).astype(int)
    inside = (c >= 0) & (c < codes.shape[1]) & (r >= 0) & (r < codes.shape[0])
    src = np.zeros(h * w, dtype=np.uint8)
    src[inside] = codes[r[inside], c[inside]]
    for code, colour in ((1, (228, 26, 28, 255)), (2, (255, 200, 0, 255))):
        drawn = layers[code][..., 3].ravel() > 0
        assert (layers[code].reshape(-1, 4)[drawn] == colour).all()
        agree = np.mean(drawn == (src == code))
        assert agree > 0.97, f"code {code}: {agree:.3f} of the overlay pixels agree with the ground"
        ground_m2 = drawn.sum() * abs((x1 - x0) * (y1 - y0)) / (h * w) * np.cos(np.radians((north + south) / 2)) ** 2
        assert ground_m2 == pytest.approx((codes == code).sum() * 0.04, rel=0.05)  # Mercator m² scaled by cos²(lat)


def test_a_coarsened_overlay_keeps_a_single_changed_pixel(tmp_path):
    path, codes, t = _confidence(tmp_path)
    codes[:] = 0
    codes[50, 70] = 2
    with rasterio.open(path, "r+") as dst:
        dst.write(codes, 1)
    _, layers = change_map.confidence_overlays(path, max_px=16)
    assert max(layers[2].shape[:2]) == 16 and (layers[2][..., 3] > 0).sum() >= 1 and not layers[1][..., 3].any()


def test_the_predictions_map_swipes_the_two_aerial_images_under_the_two_change_layers(tmp_path):
    cat, a, b = _demo_images()
    path, _, _ = _confidence(tmp_path)
    html = change_map.predictions_map(a, b, "http://t", path).get_root().render()
    assert f"http://t/datasets/{a.id}/tiles/" in html and f"http://t/datasets/{b.id}/tiles/" in html
    assert "sideBySide" in html and "Sure change (red)" in html and "Uncertain change (amber)" in html
    assert html.count("L.imageOverlay") == 2 and "data:image/png;base64" in html
    bare = change_map.predictions_map(a, b, "http://t").get_root().render()
    assert "sideBySide" in bare and "L.imageOverlay" not in bare


def test_sankey_labels_are_dark_text_in_a_light_halo(result):
    from flair_viz.web import charts

    font = charts.flows_sankey(views.main_flows(result, "2020", "2023")).data[0].textfont
    r, g, b = (int(font.color[i:i + 2], 16) / 255 for i in (1, 3, 5))
    assert 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.2  # dark on the light grey links, not white
    assert "#fff" in font.shadow


def test_the_series_map_fits_the_strip_at_a_fractional_zoom():
    """The Gers strip is three times as tall as wide: whole zoom levels showed it at half the map's height."""
    import re

    from flair_viz.core.catalog import Catalog
    from flair_viz.web import maps as webmap

    cat = Catalog.load(DEMO / "catalog.toml")
    before, after = (cat.get(i) for i in ("GERS_NAF_2016", "GERS_NAF_2019"))
    html = change_map.pair_map(cat, before, after, "http://t").get_root().render()
    west, south, east, north = webmap.dataset_bounds_wgs84(before)
    fit = re.search(r"fitBounds\(\s*\[\[([-\d.e]+),\s*([-\d.e]+)\],\s*\[([-\d.e]+),\s*([-\d.e]+)\]\]", html)
    assert fit, "the map does not fit any bounds"
    np.testing.assert_allclose([float(v) for v in fit.groups()], [south, west, north, east], rtol=1e-9)
    assert '"zoomSnap": 0.25' in html


def test_a_hand_picked_mixed_pair_is_computed_with_a_warning_that_says_what_it_mixes(monkeypatch):
    from streamlit.testing.v1 import AppTest

    import ui.common
    from tests.helpers import REPO

    monkeypatch.setenv("FLAIR_VIZ_CATALOG", str(DEMO / "catalog.toml"))
    monkeypatch.setattr(ui.common, "tiles_url", lambda: "http://127.0.0.1:9")  # maps are not fetched in AppTest
    at = AppTest.from_file(str(REPO / "pages" / "3_Change.py"), default_timeout=60).run()
    assert not any("Not land change alone" in w.value for w in at.warning)  # the first offered pair: two truths
    at.selectbox(key="change_pair").set_value("__custom__").run()
    pick = {s.label: s for s in at.selectbox}
    pick["Before (earlier)"].set_value("PRED_000473_demo-unet-r18")
    pick["After (later)"].set_value("MSK_000473_SIM2024")
    at.run()
    assert not at.exception
    warned = [w.value for w in at.warning if "Not land change alone" in w.value]
    assert len(warned) == 1 and "every pixel the model got wrong" in warned[0]
    assert "Choose two rasters" in at.selectbox(key="change_pair").format_func("__custom__")
    assert "ground truth" in at.selectbox(key="change_pair").help
