"""Metrics: which classes a model confuses, where, and whether model B beats model A.

Everything shown is derived from the stored per-patch confusion matrices (flair_viz.metrics), so
filters update at once. A click on a heatmap cell ranks the patches by that confusion, and one
more click opens the Explore map on the patch with the confused pixels highlighted.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from flair_viz import metrics
from flair_viz.core.catalog import Catalog
from flair_viz.core.errors import FlairVizError
from ui import common

common.setup("Metrics", "📊")
st.title("Metrics")

SOURCES = {"catalog": "Catalog pairs (computed here)", "store": "Everything in the metrics store"}
MODES = {"counts": "Counts", "recall": "Row-normalised (recall)", "precision": "Column-normalised (precision)"}
PROTOCOL_LABELS = {"flair1": "FLAIR-1 protocol (13 classes, mIoU over 12)", "full": "Full 19 classes"}


@st.cache_data(show_spinner="Computing confusion matrices for the catalog's prediction pairs…")
def _catalog_rows(catalog_file: str, catalog_mtime_ns: int, store: str, nonce: int) -> tuple[pd.DataFrame, np.ndarray, int, int, list[str]]:
    """Incremental evaluation of the catalog's pairs; the cache key changes with the catalog file."""
    cat = Catalog.load(catalog_file)
    run = metrics.evaluate(metrics.catalog_pairs(cat), store=store)
    unpaired = [d.id for d in metrics.unpaired_predictions(cat)]
    return run.table.meta, run.table.matrices, run.computed, run.reused, unpaired


@st.cache_data(show_spinner="Reading the metrics store…")
def _store_rows(store: str, mtime_ns: int) -> tuple[pd.DataFrame, np.ndarray]:
    table = metrics.MetricsTable.read(store)
    return table.meta, table.matrices


def _fmt_count(v: float) -> str:
    if v >= 1e6:
        return f"{v / 1e6:.1f}M"
    if v >= 1e3:
        return f"{v / 1e3:.0f}k"
    return f"{v:.0f}"


def heatmap(cm: np.ndarray, names: list[str], mode: str, log: bool) -> go.Figure:
    """Confusion heatmap; an invisible scatter of cell centres on top makes cells clickable.

    Streamlit reports selections of point traces only (not heatmap cells), so each cell also has a
    transparent marker (``point_index`` = row * k + column) that plotly itself tints when clicked.
    The figure must not depend on the selection: Streamlit derives the chart's widget ID from the
    figure, and a changed ID drops the click that caused the rerun.
    """
    k = len(names)
    z = metrics.normalise(cm, mode)
    shown = np.where(z > 0, np.log10(np.where(z > 0, z, 1)), np.nan) if log else z
    text = [[("" if cm[r, c] == 0 else (_fmt_count(cm[r, c]) if mode == "counts" else f"{z[r, c]:.0%}"))
             for c in range(k)] for r in range(k)]
    colorbar = dict(title="log10" if log else ("pixels" if mode == "counts" else "share"))
    fig = go.Figure(go.Heatmap(z=shown, x=names, y=names, text=text, texttemplate="%{text}", textfont=dict(size=9),
                               colorscale="Blues", hoverinfo="skip", colorbar=colorbar))
    rows, cols = np.divmod(np.arange(k * k), k)
    hover = [f"truth <b>{names[r]}</b> → predicted <b>{names[c]}</b><br>{cm[r, c]:,} px"
             + ("" if mode == "counts" else f" · {z[r, c]:.1%}" if np.isfinite(z[r, c]) else "")
             for r, c in zip(rows, cols)]
    fig.add_trace(go.Scatter(x=[names[c] for c in cols], y=[names[r] for r in rows], mode="markers",
                             marker=dict(size=18, opacity=0, symbol="square", color="#ff00ff"), hovertext=hover,
                             hoverinfo="text", selected=dict(marker=dict(opacity=0.55)),
                             unselected=dict(marker=dict(opacity=0)),
                             showlegend=False, name="cells"))
    fig.update_layout(height=640 if k > 13 else 540, margin=dict(l=10, r=10, t=30, b=10),
                      xaxis=dict(title="predicted", tickangle=-45, side="bottom"),
                      yaxis=dict(title="truth", autorange="reversed"), clickmode="event+select")
    return fig


def bars(values: np.ndarray, names: list[str], colors: list[str], title: str) -> go.Figure:
    fig = go.Figure(go.Bar(x=names, y=values, marker=dict(color=colors, line=dict(color="#333", width=1)),
                           hovertemplate="%{x}: %{y:.3f}<extra></extra>"))
    fig.update_layout(title=title, height=340, margin=dict(l=10, r=10, t=40, b=10), yaxis=dict(range=[0, 1]),
                      xaxis=dict(tickangle=-45))
    return fig


def open_on_map(row: pd.Series, cell: tuple[int, int], protocol: str) -> None:
    """Hand the patch and the confusion to the Explore page, which draws the c1→c2 highlight layer."""
    st.session_state["explore"] = {"patch": row.patch, "model": row.model, "truth_id": row.truth_id,
                                   "pred_id": row.pred_id, "confusion": [int(cell[0]), int(cell[1])], "protocol": protocol}
    st.switch_page("pages/1_Explore.py", query_params={"patch": row.patch})


def page() -> None:
    cat = common.catalog()
    store = str(metrics.default_store())
    with st.sidebar:
        st.header("Data")
        source = st.radio("Source", list(SOURCES), format_func=SOURCES.get, key="metrics_source")
        if source == "catalog" and st.button("Recompute changed pairs", help="Re-checks every file's mtime/size"):
            st.session_state["metrics_nonce"] = st.session_state.get("metrics_nonce", 0) + 1
        protocol = st.radio("Protocol", list(PROTOCOL_LABELS), format_func=PROTOCOL_LABELS.get, key="metrics_protocol")

    if source == "catalog":
        src = cat.source
        mtime = src.stat().st_mtime_ns if src and src.exists() else 0
        meta, mats, computed, reused, unpaired = _catalog_rows(str(src), mtime, store, st.session_state.get("metrics_nonce", 0))
        if unpaired:
            st.caption(f"{len(unpaired)} prediction(s) without a ground truth of the same patch are not scored: "
                       + ", ".join(unpaired[:8]) + (" …" if len(unpaired) > 8 else ""))
    else:
        mtime = metrics.default_store().stat().st_mtime_ns if metrics.default_store().exists() else 0
        meta, mats = _store_rows(store, mtime)
    table = metrics.MetricsTable(meta, mats)
    if not len(table):
        st.info("Nothing to score yet: no prediction in the catalog has a ground truth of the same patch. "
                "Register predictions (role \"prediction\", same `patch` as a ground truth), or score folders with "
                "`flair-viz evaluate --truth T --pred P` and choose *Everything in the metrics store*.")
        return

    models = sorted(table.meta["model"].dropna().unique())
    with st.sidebar:
        st.header("Filters")
        model = st.selectbox("Model", models, key="metrics_model") if len(models) > 1 else models[0]
        mine = table.meta["model"] == model
        domains = st.multiselect("Domain", sorted(table.meta.loc[mine, "domain"].dropna().unique()),
                                 placeholder="all domains", key="metrics_domains")
        zone_rows = mine & (table.meta["domain"].isin(domains) if domains else True)
        zones = st.multiselect("Zone", sorted(table.meta.loc[zone_rows, "zone"].dropna().unique()),
                               placeholder="all zones", key="metrics_zones")
        dates = table.dates[mine].dropna()
        date_range = None
        if len(dates) and dates.min() < dates.max():
            lo, hi = dates.min().date(), dates.max().date()
            picked_dates = st.date_input("Date range", value=(lo, hi), min_value=lo, max_value=hi, key="metrics_dates")
            if isinstance(picked_dates, (tuple, list)) and len(picked_dates) == 2:
                date_range = (picked_dates[0], picked_dates[1])
            elif isinstance(picked_dates, dt.date):
                date_range = (picked_dates, picked_dates)
        patches = st.multiselect("Patch", sorted(table.meta.loc[mine, "patch"].dropna().unique()),
                                 placeholder="all patches", key="metrics_patches")

    mask = metrics.filter_mask(table, domains=domains, zones=zones, date_range=date_range, patches=patches, models=[model])
    if not mask.any():
        st.warning("No patch matches these filters.")
        return
    sc = metrics.scores(table.total(mask), protocol)
    names, k = sc.names, len(sc.names)

    st.caption(f"Model **{model}** · {int(mask.sum())} patch(es) · {PROTOCOL_LABELS[protocol]}")
    if any(d.extra.get("demo_model") == "true" and metrics.model_name(d) == model for d in cat.by_role("prediction")):
        st.warning(f"**{model}** is the demo model, trained on these very patches: its scores show how the page "
                   "works, they are not an evaluation.", icon=":material/info:")
    c1, c2, c3, c4 = st.columns(4)
    c1.metric(f"mIoU · {'FLAIR-1 protocol' if protocol == 'flair1' else 'full 19 classes'}",
              "n/a" if np.isnan(sc.miou) else f"{sc.miou:.3f}")
    c2.metric("Overall accuracy", "n/a" if np.isnan(sc.oa) else f"{sc.oa:.3f}")
    c3.metric("Scored pixels", f"{int(sc.matrix.sum()):,}")
    c4.metric("Ignored pixels", f"{int(table.meta.loc[mask, 'ignored'].sum()):,}",
              help="nodata (0) or values outside 1..19 in the truth or the prediction")
    if sc.undefined_in_miou:
        st.caption("Left out of the mIoU (absent from both truth and prediction, IoU undefined): "
                   + ", ".join(sc.undefined_in_miou))

    st.subheader("Confusion matrix")
    left, right = st.columns([3, 1])
    with right:
        mode = st.radio("Values", list(MODES), format_func=MODES.get, key="metrics_mode")
        log = st.checkbox("Log colour scale", key="metrics_log")
        st.caption("Click a cell to list the patches where that confusion covers the most pixels.")
    last_click = st.session_state.get("_metrics_last_click")
    last_click = tuple(last_click) if last_click and max(last_click) <= k else None
    current = st.session_state.get("metrics_cell")
    current = tuple(current) if current and max(current) <= k else None
    with left:
        event = st.plotly_chart(heatmap(sc.matrix, names, mode, log), key="metrics_heatmap", on_select="rerun",
                                selection_mode="points")
    points = event.get("selection", {}).get("points", []) if hasattr(event, "get") else []
    if points and points[0].get("point_index") is not None:
        idx = int(points[0]["point_index"])
        clicked = (idx // k + 1, idx % k + 1)
        if clicked != last_click:  # a selection stays reported on later reruns; act on new ones only
            st.session_state["_metrics_last_click"] = last_click = clicked
            st.session_state["metrics_cell"] = current = clicked

    options = [(r, c) for r, c, _ in metrics.top_confusions(sc.matrix, 10)]
    if last_click is not None and last_click not in options:
        options.insert(0, last_click)
    if options:
        if current not in options:
            st.session_state["metrics_cell"] = options[0]
        cell = st.selectbox("Confusion to inspect (worst first)", options, key="metrics_cell",
                            format_func=lambda rc: f"{names[rc[0] - 1]} → {names[rc[1] - 1]} · "
                                                   f"{int(sc.matrix[rc[0] - 1, rc[1] - 1]):,} px")
        ranked = metrics.rank_patches(table, cell[0], cell[1], protocol, mask)
        st.markdown(f"**Patches where _{names[cell[0] - 1]}_ was predicted as _{names[cell[1] - 1]}_**, most pixels first")
        if ranked.empty:
            st.write("No patch has this confusion.")
        else:
            suffix = f"{protocol}_{cell[0]}_{cell[1]}"  # per cell: a new ranking never shows the last cell's choice
            picked_rows = st.dataframe(ranked.drop(columns=["truth_id", "pred_id"]), hide_index=True,
                                       on_select="rerun", selection_mode="single-row", key=f"metrics_ranked_{suffix}",
                                       column_config={"share_of_truth": st.column_config.NumberColumn(format="percent")})
            labels = [f"{r.patch} · {r.pixels:,} px ({r.model})" for r in ranked.itertuples()]
            choice = st.selectbox("Patch to open on the map", labels, key=f"metrics_open_patch_{suffix}",
                                  help="or click a row of the table")
            row = ranked.iloc[labels.index(choice)]
            can_open = bool(row.truth_id) and bool(row.pred_id)
            clicked_rows = picked_rows.get("selection", {}).get("rows", []) if hasattr(picked_rows, "get") else []
            if clicked_rows:
                row = ranked.iloc[clicked_rows[0]]
                can_open = bool(row.truth_id) and bool(row.pred_id)
            if st.button("Open on the map", type="primary", disabled=not can_open, key="metrics_open",
                         help=None if can_open else "this pair was scored from files, not catalog datasets") or (
                    clicked_rows and can_open):
                open_on_map(row, cell, protocol)
    else:
        st.write("No confusion at all in this selection: every scored pixel is on the diagonal.")

    st.subheader("Per-class scores")
    colors = metrics.protocol_colors(protocol)
    b1, b2 = st.columns(2)
    b1.plotly_chart(bars(sc.iou, names, colors, "IoU"), key="metrics_iou")
    b2.plotly_chart(bars(sc.f1, names, colors, "F1"), key="metrics_f1")
    scores_df = sc.table()
    st.dataframe(scores_df, hide_index=True)

    cm_df = pd.DataFrame(sc.matrix, index=pd.Index(names, name="truth \\ predicted"), columns=names)
    d1, d2 = st.columns(2)
    d1.download_button("Per-class scores (CSV)", scores_df.to_csv(index=False), f"scores_{protocol}_{model}.csv",
                       "text/csv", key="metrics_dl_scores")
    d2.download_button("Confusion matrix (CSV)", cm_df.to_csv(), f"confusion_{protocol}_{model}.csv", "text/csv",
                       key="metrics_dl_cm")

    if len(models) > 1:
        st.subheader("Model A vs model B")
        a_col, b_col = st.columns(2)
        model_a = a_col.selectbox("Model A", models, index=0, key="metrics_model_a")
        model_b = b_col.selectbox("Model B", models, index=1, key="metrics_model_b")
        others = metrics.filter_mask(table, domains=domains, zones=zones, date_range=date_range, patches=patches)
        delta, sa, sb, common_patches = metrics.compare_models(table, model_a, model_b, protocol, others)
        if not common_patches:
            st.write("The two models share no patch under these filters.")
        else:
            st.caption(f"On the {len(common_patches)} patch(es) both models predicted · mIoU A {sa.miou:.3f} · "
                       f"B {sb.miou:.3f} · Δ {sb.miou - sa.miou:+.3f}")
            fig = go.Figure(go.Bar(x=names, y=delta["iou_delta"], marker=dict(color=colors, line=dict(color="#333", width=1)),
                                   hovertemplate="%{x}: ΔIoU %{y:+.3f}<extra></extra>"))
            fig.update_layout(title="IoU of B − IoU of A", height=320, margin=dict(l=10, r=10, t=40, b=10),
                              xaxis=dict(tickangle=-45))
            st.plotly_chart(fig, key="metrics_delta")
            st.dataframe(delta, hide_index=True)
            st.download_button("Model comparison (CSV)", delta.to_csv(index=False),
                               f"compare_{model_a}_vs_{model_b}_{protocol}.csv", "text/csv", key="metrics_dl_cmp")


try:
    page()
except FlairVizError as exc:
    common.show_error(exc)
common.footer()
