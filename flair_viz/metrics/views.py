"""What the Metrics page offers and where its clicks lead, decided without Streamlit.

The page is a thin layer of widgets: the filter choices of a model, the confusion cells worth
inspecting, and the Explore deep link of a ranked patch are computed here, where they can be tested
without a browser.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from flair_viz.metrics.scores import Scores, filter_mask, top_confusions
from flair_viz.metrics.store import MetricsTable

Cell = tuple[int, int]  # (truth class, predicted class), 1-based classes of the view


NA = "—"  # a score that is undefined (no pixel of the class in truth or prediction)
NA_HELP = ("— : not defined, nothing to divide by: IoU and F1 when the class is in neither the truth nor the "
           "prediction of these patches, precision when it is never predicted, recall when the truth has none of it")
ZONE_SEP = " / "


def zone_key(domain: object, zone: object) -> str:
    """A zone as the filter offers it, with its domain: FLAIR reuses zone names (Z6_NU is in D004 and D034)."""
    return f"{domain}{ZONE_SEP}{zone}"


@dataclass(frozen=True)
class FilterChoices:
    """The values a model's filters can take: domains, zones (``domain / zone``) of the chosen domains, patches,
    date span."""

    domains: list[str]
    zones: list[str]
    patches: list[str]
    date_bounds: tuple[dt.date, dt.date] | None  # None when every patch has the same date (or none)


def filter_choices(table: MetricsTable, model: str, domains: Iterable[str] = ()) -> FilterChoices:
    """Only values present for ``model`` are offered, and zones narrow to the chosen ``domains``."""
    meta = table.meta
    mine = (meta["model"] == model).to_numpy()
    domains = list(domains)
    zone_rows = mine & (meta["domain"].isin(domains).to_numpy() if domains else True)
    dates = table.dates[mine].dropna()
    bounds = (dates.min().date(), dates.max().date()) if len(dates) and dates.min() < dates.max() else None
    zones = meta.loc[zone_rows & meta["zone"].notna().to_numpy(), ["domain", "zone"]]
    return FilterChoices(domains=sorted(meta.loc[mine, "domain"].dropna().unique()),
                         zones=sorted({zone_key(d, z) for d, z in zones.itertuples(index=False)}),
                         patches=sorted(meta.loc[mine, "patch"].dropna().unique()), date_bounds=bounds)


def selection_mask(table: MetricsTable, zones: Iterable[str] = (), **others) -> np.ndarray:
    """Rows matching the page's filters; ``zones`` are ``domain / zone`` keys (:func:`zone_key`), the other
    filters those of :func:`flair_viz.metrics.scores.filter_mask`."""
    mask = filter_mask(table, **others)
    zones = list(zones)
    if zones:
        keys = [zone_key(d, z) for d, z in zip(table.meta["domain"], table.meta["zone"])]
        mask &= np.isin(np.array(keys, dtype=object), zones)
    return mask


def as_date_range(picked: object) -> tuple[dt.date, dt.date] | None:
    """A date picker's value as a (from, to) range: one date is a one-day range, a half-picked range none."""
    if isinstance(picked, (tuple, list)) and len(picked) == 2:
        return picked[0], picked[1]
    if isinstance(picked, dt.date):
        return picked, picked
    return None


def cell_at(point_index: int, k: int) -> Cell:
    """The cell of the heatmap's ``point_index``-th marker (row-major over a k × k matrix)."""
    return point_index // k + 1, point_index % k + 1


def cell_choices(matrix: np.ndarray, clicked: Cell | None = None, n: int = 10) -> list[Cell]:
    """The ``n`` worst confusions, worst first, with a clicked cell first if it is not among them."""
    options = [(r, c) for r, c, _ in top_confusions(matrix, n)]
    if clicked is not None and clicked not in options:
        options.insert(0, clicked)
    return options


def valid_cell(value: object, k: int) -> Cell | None:
    """A remembered cell if it still fits a k-class view (the protocol may have changed since)."""
    return tuple(value) if value and max(value) <= k else None  # type: ignore[return-value]


def explore_link(row: pd.Series, cell: Cell, protocol: str) -> dict:
    """The Explore page's deep link that draws the ``cell`` confusion highlight on ``row``'s patch."""
    return {"patch": row.patch, "model": row.model, "truth_id": row.truth_id, "pred_id": row.pred_id,
            "confusion": [int(cell[0]), int(cell[1])], "protocol": protocol}


def confusion_frame(sc: Scores) -> pd.DataFrame:
    """The matrix with class names on both axes, as the CSV download holds it."""
    return pd.DataFrame(sc.matrix, index=pd.Index(sc.names, name="truth \\ predicted"), columns=sc.names)


def score_text(value: float, signed: bool = False) -> str:
    """A score as the page prints it: three decimals, or :data:`NA` when it is undefined."""
    if value is None or not np.isfinite(value):
        return NA
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def headline(sc: Scores) -> dict[str, str]:
    """mIoU and OA as the page prints them (:data:`NA` when undefined)."""
    return {"miou": score_text(sc.miou), "oa": score_text(sc.oa)}


SCORE_COLUMNS = ("iou", "f1", "precision", "recall")
COLUMN_LABELS = {"class": "Class", "iou": "IoU", "f1": "F1", "precision": "Precision", "recall": "Recall",
                 "truth_pixels": "Truth pixels", "predicted_pixels": "Predicted pixels", "in_miou": "In the mIoU",
                 "patch": "Patch", "model": "Model", "domain": "Domain", "zone": "Zone", "date": "Date",
                 "pixels": "Confused pixels", "share_of_truth": "Share of the truth class",
                 "iou_delta": "IoU B − A", "f1_delta": "F1 B − A"}


def scores_display(df: pd.DataFrame) -> pd.DataFrame:
    """A per-class or comparison table for the screen: score columns as text, ``—`` where undefined
    (a table widget would print ``None``); delta columns signed. The CSV keeps the numbers."""
    out = df.copy()
    for col in out.columns:
        if out[col].dtype.kind == "f" and (col.startswith(SCORE_COLUMNS) or col.endswith("_delta")):
            out[col] = [score_text(v, signed=col.endswith("_delta")) for v in out[col]]
    return out


def model_title(model_id: str) -> str:
    """A model as people read it: its card's title and the ID beside it (the ID alone when no card has it).

    Why the ID too: it is what the CLI, the catalog and the exported CSV files name."""
    from flair_viz.predict.cards import list_cards

    title = next((c.title for c in list_cards() if c.id == model_id and c.title and c.title != model_id), None)
    return f"{title} ({model_id})" if title else str(model_id)
