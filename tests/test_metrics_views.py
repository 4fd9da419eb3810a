"""What the Metrics page offers, decided in the library: filter choices, confusion cells, deep links."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from flair_viz import metrics
from flair_viz.metrics import views


def table_of(rows: list[dict]) -> metrics.MetricsTable:
    meta = pd.DataFrame([{c: None for c in metrics.META_COLUMNS} | r for r in rows], columns=list(metrics.META_COLUMNS))
    return metrics.MetricsTable(meta, np.zeros((len(rows), 19, 19), np.int64))


TABLE = table_of([
    {"patch": "p1", "model": "a", "domain": "D1", "zone": "Z1", "date": "2020-05-01"},
    {"patch": "p2", "model": "a", "domain": "D1", "zone": "Z2", "date": "2021-06-01"},
    {"patch": "p3", "model": "a", "domain": "D2", "zone": "Z9", "date": "2021-06-01"},
    {"patch": "p4", "model": "b", "domain": "D3", "zone": "Z7", "date": "2019-01-01"},
])


def test_filter_choices_are_the_models_values_and_zones_narrow_to_domains():
    all_a = views.filter_choices(TABLE, "a")
    assert (all_a.domains, all_a.zones, all_a.patches) == (["D1", "D2"], ["D1 / Z1", "D1 / Z2", "D2 / Z9"],
                                                           ["p1", "p2", "p3"])
    assert all_a.date_bounds == (dt.date(2020, 5, 1), dt.date(2021, 6, 1))
    assert views.filter_choices(TABLE, "a", ["D1"]).zones == ["D1 / Z1", "D1 / Z2"]
    assert views.filter_choices(TABLE, "b").date_bounds is None  # one date: no range to pick


def test_date_picker_values_become_ranges():
    d1, d2 = dt.date(2020, 1, 1), dt.date(2020, 2, 1)
    assert views.as_date_range((d1, d2)) == (d1, d2)
    assert views.as_date_range(d1) == (d1, d1)
    assert views.as_date_range((d1,)) is None  # half-picked range


def test_cells_worst_first_with_a_clicked_cell_kept():
    cm = np.zeros((13, 13), np.int64)
    cm[0, 1], cm[2, 3], cm[4, 4] = 5, 9, 100  # the diagonal is no confusion
    assert views.cell_choices(cm) == [(3, 4), (1, 2)]
    assert views.cell_choices(cm, clicked=(7, 8)) == [(7, 8), (3, 4), (1, 2)]
    assert views.cell_choices(cm, clicked=(1, 2)) == [(3, 4), (1, 2)]
    assert views.cell_at(2 * 13 + 3, 13) == (3, 4)
    assert views.valid_cell([14, 2], 13) is None and views.valid_cell([13, 2], 13) == (13, 2)


def test_explore_link_and_confusion_csv():
    row = pd.Series({"patch": "p1", "model": "a", "truth_id": "MSK_p1", "pred_id": "PRED_p1"})
    assert views.explore_link(row, (np.int64(3), 4), "flair1") == {
        "patch": "p1", "model": "a", "truth_id": "MSK_p1", "pred_id": "PRED_p1", "confusion": [3, 4],
        "protocol": "flair1"}
    cm = np.arange(19 * 19).reshape(19, 19)
    sc = metrics.scores(cm, "full")
    frame = views.confusion_frame(sc)
    assert frame.index.name == "truth \\ predicted" and list(frame.columns) == sc.names
    assert frame.iloc[2, 5] == cm[2, 5]


def test_zones_of_the_same_name_in_two_domains_stay_apart():
    """FLAIR reuses zone names (Z6_NU in D004_2021 and D034_2021): the filter offers and selects each one."""
    t = table_of([{"patch": "p1", "model": "a", "domain": "D004_2021", "zone": "Z6_NU"},
                  {"patch": "p2", "model": "a", "domain": "D034_2021", "zone": "Z6_NU"},
                  {"patch": "p3", "model": "a", "domain": "D034_2021", "zone": "Z6_NU"},
                  {"patch": "p4", "model": "b", "domain": "D034_2021", "zone": "Z6_NU"}])
    assert views.filter_choices(t, "a").zones == ["D004_2021 / Z6_NU", "D034_2021 / Z6_NU"]
    assert views.selection_mask(t, zones=["D034_2021 / Z6_NU"], models=["a"]).tolist() == [False, True, True, False]
    assert views.selection_mask(t, zones=["D004_2021 / Z6_NU"]).tolist() == [True, False, False, False]
    assert views.selection_mask(t, patches=["p3", "p4"]).tolist() == [False, False, True, True]  # no zone: no filter


def test_undefined_scores_read_as_a_dash_not_none():
    cm = np.zeros((19, 19), np.int64)
    cm[0, 0], cm[0, 1], cm[5, 5] = 10, 5, 20  # only classes 1, 2 and 6 occur: every other IoU is undefined
    sc = metrics.scores(cm, "full")
    shown = views.scores_display(sc.table())
    assert shown.loc[0, "iou"] == f"{10 / 15:.3f}" and shown.loc[1, "iou"] == "0.000"
    assert shown.loc[2, "iou"] == views.NA and shown.loc[2, "recall"] == views.NA
    assert shown.loc[2, "truth_pixels"] == 0  # counts stay numbers
    assert "None" not in shown.astype(str).to_numpy()
    delta = pd.DataFrame({"class": ["a", "b"], "iou_m1": [0.5, np.nan], "iou_delta": [0.25, np.nan]})
    assert views.scores_display(delta)[["iou_m1", "iou_delta"]].to_numpy().tolist() == [["0.500", "+0.250"],
                                                                                       [views.NA, views.NA]]
    assert views.headline(metrics.scores(np.zeros((19, 19), np.int64), "full")) == {"miou": views.NA, "oa": views.NA}


def test_class_bars_label_undefined_classes():
    from flair_viz.web import charts

    fig = charts.class_bars(np.array([0.5, np.nan, 0.0]), ["a", "b", "c"], ["#000"] * 3, "IoU")
    bar = fig.data[0]
    assert list(bar.y) == [0.5, 0.0, 0.0] and list(bar.text) == ["", "n/a", ""]
    assert list(bar.customdata) == ["0.500", "n/a (class absent)", "0.000"]


def test_model_title_is_the_cards_title_beside_its_id():
    import tomllib

    from tests.helpers import REPO, default_model_id

    model = default_model_id()
    card = next(tomllib.loads(p.read_text(encoding="utf-8")) for p in (REPO / "models").glob("*.toml")
                if tomllib.loads(p.read_text(encoding="utf-8"))["id"] == model)
    assert views.model_title(model) == f"{card['title']} ({model})"
    assert views.model_title("no-such-model") == "no-such-model"


def test_open_on_the_map_shows_the_highlight_against_the_ground_truth_and_nothing_over_them():
    """Metrics' link promises 'Confusion | Ground truth' in the swipe: those two layers, the truth that was scored,
    and the model's predictions kept aside (drawn after the pair, they covered both halves of the swipe)."""
    from flair_viz.core.catalog import Catalog
    from flair_viz.web import explore
    from tests.helpers import DEMO_CATALOG

    cat = Catalog.load(DEMO_CATALOG)
    pred = next(d for d in cat.by_role("prediction") if d.patch == "050549")
    row = pd.Series({"patch": "050549", "model": pred.extra.get("model", "m"), "truth_id": "MSK_050549",
                     "pred_id": pred.id})
    state: dict = {"explore": views.explore_link(row, (3, 2), "flair1")}
    link = explore.take_deep_link(state, {})
    scene = explore.find_scene(explore.list_scenes(cat), link["patch"])
    layers = explore.scene_layers(scene, cat, "http://t", models=state["explore_models"], deep_link=link)
    (left, left_url), (right, right_url) = layers.class_layers
    assert left.startswith("Confusion: truth") and f"/confusion/{pred.id}/" in left_url
    assert right == "Ground truth" and right_url.startswith("http://t/datasets/MSK_050549/tiles/")
    assert [n for n, _ in layers.hidden] == [f"Prediction · {row.model}"]
    plain = explore.scene_layers(scene, cat, "http://t", models=[row.model])  # no link: the usual pair, none hidden
    assert [n for n, _ in plain.class_layers] == ["Ground truth", f"Prediction · {row.model}"] and not plain.hidden
