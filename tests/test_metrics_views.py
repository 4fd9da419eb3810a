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
    assert (all_a.domains, all_a.zones, all_a.patches) == (["D1", "D2"], ["Z1", "Z2", "Z9"], ["p1", "p2", "p3"])
    assert all_a.date_bounds == (dt.date(2020, 5, 1), dt.date(2021, 6, 1))
    assert views.filter_choices(TABLE, "a", ["D1"]).zones == ["Z1", "Z2"]
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
