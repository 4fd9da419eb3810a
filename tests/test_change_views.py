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
        assert p.label.endswith(kind)
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
