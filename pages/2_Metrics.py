"""Metrics: which classes a model confuses, where, and whether model B beats model A.

Everything shown is derived from the stored per-patch confusion matrices (flair_viz.metrics), so
filters update at once. A click on a heatmap cell ranks the patches by that confusion, and one
more click opens the Explore map on the patch with the confused pixels highlighted.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from flair_viz import metrics
from flair_viz.core.errors import FlairVizError
from flair_viz.correct import jobs
from flair_viz.metrics import views
from flair_viz.predict.cards import in_card_order, is_demo
from flair_viz.web import charts
from flair_viz.web import corrections as webcorr
from ui import common

common.setup("Metrics", "📊")
st.title("Metrics")

SOURCES = {"catalog": "Catalog pairs (computed here)", "store": "Everything in the metrics store"}
MODES = {"counts": "Counts", "recall": "Row-normalised (recall)", "precision": "Column-normalised (precision)"}
PROTOCOL_LABELS = {"flair1": "FLAIR-1 protocol (13 classes, mIoU over 12)", "full": "Full 19 classes"}


@st.cache_data(show_spinner="Computing confusion matrices for the catalog's prediction pairs…")
def _catalog_rows(catalog_version: float, store: str, nonce: int) -> tuple[pd.DataFrame, np.ndarray, int, int, list[str]]:
    """Incremental evaluation of the (cached) catalog's pairs; the catalog version invalidates it."""
    cat = common.catalog()
    run = metrics.evaluate(metrics.catalog_pairs(cat), store=store)
    unpaired = [d.id for d in metrics.unpaired_predictions(cat)]
    return run.table.meta, run.table.matrices, run.computed, run.reused, unpaired


@st.cache_data(show_spinner="Reading the metrics store…")
def _store_rows(store: str, mtime_ns: int) -> tuple[pd.DataFrame, np.ndarray]:
    table = metrics.MetricsTable.read(store)
    return table.meta, table.matrices


def load_table(source: str) -> metrics.MetricsTable:
    store = metrics.default_store()
    if source == "catalog":
        meta, mats, _, _, unpaired = _catalog_rows(common.catalog_version(), str(store),
                                                   st.session_state.get("metrics_nonce", 0))
        if unpaired:
            cat = common.catalog()
            names = [cat.get(i).label if i in cat else i for i in unpaired[:8]]
            st.caption(f"{len(unpaired)} prediction(s) without a ground truth of the same patch are not scored: "
                       + ", ".join(names) + (" …" if len(unpaired) > 8 else ""))
    else:
        meta, mats = _store_rows(str(store), store.stat().st_mtime_ns if store.exists() else 0)
    return metrics.MetricsTable(meta, mats)


def filters(table: metrics.MetricsTable, models: list[str]) -> tuple[str, dict]:
    """The sidebar filters: the model, and the other filters as ``filter_mask`` keywords."""
    with st.sidebar:
        st.header("Filters")
        model = (st.selectbox("Model", models, key="metrics_model", format_func=views.model_title)
                 if len(models) > 1 else models[0])
        domains = st.multiselect("Domain", views.filter_choices(table, model).domains,
                                 placeholder="all domains", key="metrics_domains")
        choices = views.filter_choices(table, model, domains)
        zones = st.multiselect("Zone", choices.zones, placeholder="all zones", key="metrics_zones",
                               help="domain / zone: FLAIR reuses zone names across domains")
        date_range = None
        if choices.date_bounds:
            lo, hi = choices.date_bounds
            date_range = views.as_date_range(st.date_input("Date range", value=(lo, hi), min_value=lo, max_value=hi,
                                                           key="metrics_dates"))
        patches = st.multiselect("Patch", choices.patches, placeholder="all patches", key="metrics_patches")
    return model, {"domains": domains, "zones": zones, "date_range": date_range, "patches": patches}


def headline(sc: metrics.Scores, model: str, table: metrics.MetricsTable, mask: np.ndarray, protocol: str) -> None:
    st.caption(f"Model **{views.model_title(model)}** · {int(mask.sum())} patch(es) · {PROTOCOL_LABELS[protocol]}")
    if is_demo(model):
        st.warning("This is a demo model, trained from scratch on a CPU on other zones (its card names them): "
                   "these patches are unseen, but the scores show how the page works, not a real model's accuracy.",
                   icon=":material/info:")
    shown = views.headline(sc)
    c1, c2, c3, c4 = st.columns(4)
    c1.metric(f"mIoU · {'FLAIR-1 protocol' if protocol == 'flair1' else 'full 19 classes'}", shown["miou"])
    c2.metric("Overall accuracy", shown["oa"])
    c3.metric("Scored pixels", f"{int(sc.matrix.sum()):,}")
    c4.metric("Ignored pixels", f"{int(table.meta.loc[mask, 'ignored'].sum()):,}",
              help="nodata (0) or values outside 1..19 in the truth or the prediction")
    if sc.undefined_in_miou:
        st.caption("Left out of the mIoU (absent from both truth and prediction, IoU undefined): "
                   + ", ".join(sc.undefined_in_miou))


def confusion_cell(sc: metrics.Scores) -> views.Cell | None:
    """The heatmap and the cell to inspect: a new click on the heatmap selects its cell."""
    names, k = sc.names, len(sc.names)
    st.subheader("Confusion matrix")
    left, right = st.columns([3, 1])
    with right:
        mode = st.radio("Values", list(MODES), format_func=MODES.get, key="metrics_mode")
        log = st.checkbox("Log colour scale", key="metrics_log")
        st.caption("Click a cell to list the patches where that confusion covers the most pixels.")
    last_click = views.valid_cell(st.session_state.get("_metrics_last_click"), k)
    current = views.valid_cell(st.session_state.get("metrics_cell"), k)
    with left:
        event = st.plotly_chart(charts.confusion_heatmap(sc.matrix, names, mode, log), key="metrics_heatmap",
                                on_select="rerun", selection_mode="points")
    points = event.get("selection", {}).get("points", []) if hasattr(event, "get") else []
    if points and points[0].get("point_index") is not None:
        clicked = views.cell_at(int(points[0]["point_index"]), k)
        if clicked != last_click:  # a selection stays reported on later reruns; act on new ones only
            st.session_state["_metrics_last_click"] = last_click = clicked
            st.session_state["metrics_cell"] = current = clicked
    options = views.cell_choices(sc.matrix, last_click)
    if not options:
        return None
    if current not in options:
        st.session_state["metrics_cell"] = options[0]
    return st.selectbox("Confusion to inspect (worst first)", options, key="metrics_cell",
                        format_func=lambda rc: f"{names[rc[0] - 1]} → {names[rc[1] - 1]} · "
                                               f"{int(sc.matrix[rc[0] - 1, rc[1] - 1]):,} px")


def ranked_patches(table: metrics.MetricsTable, cell: views.Cell, names: list[str], protocol: str,
                   mask: np.ndarray) -> None:
    """The patches of one confusion, most pixels first; a row click or the button opens it on the map."""
    ranked = metrics.rank_patches(table, cell[0], cell[1], protocol, mask)
    st.markdown(f"**Patches where _{names[cell[0] - 1]}_ was predicted as _{names[cell[1] - 1]}_**, most pixels first")
    if ranked.empty:
        st.write("No patch has this confusion.")
        return
    suffix = f"{protocol}_{cell[0]}_{cell[1]}"  # per cell: a new ranking never shows the last cell's choice
    picked_rows = st.dataframe(ranked.drop(columns=["truth_id", "pred_id"]), hide_index=True,
                               on_select="rerun", selection_mode="single-row", key=f"metrics_ranked_{suffix}",
                               column_config=views.COLUMN_LABELS | {"share_of_truth": st.column_config.NumberColumn(
                                   views.COLUMN_LABELS["share_of_truth"], format="percent")})
    labels = [f"{r.patch} · {r.pixels:,} px ({r.model})" for r in ranked.itertuples()]
    choice = st.selectbox("Patch to open on the map", labels, key=f"metrics_open_patch_{suffix}",
                          help="or click a row of the table")
    clicked_rows = picked_rows.get("selection", {}).get("rows", []) if hasattr(picked_rows, "get") else []
    row = ranked.iloc[clicked_rows[0] if clicked_rows else labels.index(choice)]
    can_open = bool(row.truth_id) and bool(row.pred_id)
    if st.button("Open on the map", type="primary", disabled=not can_open, key="metrics_open",
                 help=None if can_open else "this pair was scored from files, not catalog datasets") or (
            clicked_rows and can_open):
        st.session_state["explore"] = views.explore_link(row, cell, protocol)
        st.switch_page("pages/1_Explore.py", query_params={"patch": row.patch})


def per_class(sc: metrics.Scores, model: str, protocol: str) -> None:
    st.subheader("Per-class scores")
    colors = metrics.protocol_colors(protocol)
    b1, b2 = st.columns(2)
    b1.plotly_chart(charts.class_bars(sc.iou, sc.names, colors, "IoU"), key="metrics_iou")
    b2.plotly_chart(charts.class_bars(sc.f1, sc.names, colors, "F1"), key="metrics_f1")
    scores_df = sc.table()
    st.dataframe(views.scores_display(scores_df), hide_index=True, column_config=views.COLUMN_LABELS)
    if scores_df[list(views.SCORE_COLUMNS)].isna().any(axis=None):
        st.caption(views.NA_HELP)
    d1, d2 = st.columns(2)
    d1.download_button("Per-class scores (CSV)", scores_df.to_csv(index=False), f"scores_{protocol}_{model}.csv",
                       "text/csv", key="metrics_dl_scores")
    d2.download_button("Confusion matrix (CSV)", views.confusion_frame(sc).to_csv(),
                       f"confusion_{protocol}_{model}.csv", "text/csv", key="metrics_dl_cm")


def compare(table: metrics.MetricsTable, models: list[str], protocol: str, others: np.ndarray) -> None:
    """Model A vs model B on the patches both predicted, under every filter but the model."""
    st.subheader("Model A vs model B")
    a_col, b_col = st.columns(2)
    model_a = a_col.selectbox("Model A", models, index=0, key="metrics_model_a", format_func=views.model_title)
    model_b = b_col.selectbox("Model B", models, index=1, key="metrics_model_b", format_func=views.model_title)
    delta, sa, sb, common_patches = metrics.compare_models(table, model_a, model_b, protocol, others)
    if not common_patches:
        st.write("The two models share no patch under these filters.")
        return
    st.caption(f"On the {len(common_patches)} patch(es) both models predicted · mIoU A "
               f"{views.score_text(sa.miou)} · B {views.score_text(sb.miou)} · "
               f"Δ {views.score_text(sb.miou - sa.miou, signed=True)}")
    st.plotly_chart(charts.class_bars(delta["iou_delta"], sa.names, metrics.protocol_colors(protocol),
                                      "IoU of B − IoU of A", delta=True), key="metrics_delta")
    st.dataframe(views.scores_display(delta), hide_index=True, column_config=views.COLUMN_LABELS)
    if delta.isna().any(axis=None):
        st.caption(views.NA_HELP)
    st.download_button("Model comparison (CSV)", delta.to_csv(index=False),
                       f"compare_{model_a}_vs_{model_b}_{protocol}.csv", "text/csv", key="metrics_dl_cmp")


def page() -> None:
    with st.sidebar:
        st.header("Data")
        source = st.radio("Source", list(SOURCES), format_func=SOURCES.get, key="metrics_source")
        if source == "catalog" and st.button("Recompute changed pairs", help="Re-checks every file's mtime/size"):
            st.session_state["metrics_nonce"] = st.session_state.get("metrics_nonce", 0) + 1
        protocol = st.radio("Protocol", list(PROTOCOL_LABELS), format_func=PROTOCOL_LABELS.get, key="metrics_protocol")
    table = load_table(source)
    if not len(table):
        st.info("Nothing to score yet: no prediction in the catalog has a ground truth of the same patch. "
                "Register predictions (role \"prediction\", same `patch` as a ground truth), or score folders with "
                "`flair-viz evaluate --truth T --pred P` and choose *Everything in the metrics store*.")
        return
    models = in_card_order(table.meta["model"].dropna().unique())  # the default model first
    model, chosen = filters(table, models)
    mask = views.selection_mask(table, models=[model], **chosen)
    if not mask.any():
        st.warning("No patch matches these filters.")
        return
    sc = metrics.scores(table.total(mask), protocol)
    headline(sc, model, table, mask, protocol)
    cell = confusion_cell(sc)
    if cell is None:
        st.write("No confusion at all in this selection: every scored pixel is on the diagonal.")
    else:
        ranked_patches(table, cell, sc.names, protocol, mask)
    per_class(sc, model, protocol)
    if len(models) > 1:
        compare(table, models, protocol, views.selection_mask(table, **chosen))
    fine_tuned()


def fine_tuned() -> None:
    """Fine-tunes from Explore's corrections: parent vs fine-tuned on ground truth, training pixels apart."""
    done = jobs.finished()
    if not done:
        return
    st.subheader("Fine-tuned models: parent vs fine-tuned")
    st.caption("Scored by each fine-tune on the ground truth of its corrected images (FLAIR-1 protocol). The "
               "fine-tuning pixels are training pixels: only the other pixels say anything about accuracy.")
    for doc in done:
        with st.expander(f"{doc['model_id']} (from {doc.get('parent', '?')})", expanded=doc is done[0]):
            st.markdown(webcorr.figure_text(doc))
            st.dataframe(webcorr.evaluation_table(doc["evaluation"]), hide_index=True, width="stretch")


try:
    page()
except FlairVizError as exc:
    common.show_error(exc)
common.footer()
