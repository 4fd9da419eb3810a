"""Change: how many hectares were artificialised between two vintages, and where."""

from __future__ import annotations

import json

import streamlit as st

from flair_viz import change
from flair_viz.change import outputs as change_outputs
from flair_viz.change import pairs as change_pairs
from flair_viz.change import views
from flair_viz.core.catalog import Catalog
from flair_viz.core.errors import FlairVizError
from flair_viz.web import change_map, change_trend, charts
from flair_viz.web import maps as webmap
from ui import common

common.setup("Change", ":material/compare:")
st.title("Change between vintages")

cat = common.require(common.catalog)  # a missing or broken catalog is an st.error, not a traceback
base = common.require(common.tiles_url)
pairs = change.list_pairs(cat)
rasters = change.class_rasters(cat)
if not rasters:
    st.warning("The catalog has no ground truth or prediction rasters. Register some with `flair-viz catalog scan DIR`.")
    common.footer()
    st.stop()

VIEWS = {"pair": "Two vintages", "series": "Series (time slider)", "predictions": "From predictions (model)"}
with st.sidebar:
    view = st.radio("Compare", [v for v in VIEWS if v != "series" or cat.series_names()], format_func=VIEWS.get,
                    key="change_view")


def map_options() -> tuple[str, float]:
    """The sidebar's map options (change layer colours, class layer opacity)."""
    with st.sidebar:
        st.header("Map")
        mode = st.radio("Change layer colours", ["flow", "class"], horizontal=True,
                        format_func=lambda m: {"flow": "ZAN flow", "class": "New class"}[m])
        return mode, st.slider("Class layer opacity", 0.0, 1.0, 0.6, 0.05)


@st.cache_resource(max_entries=8, show_spinner="Counting each interval of the series…")
def compute_series(name: str, catalog_version: float) -> change.Trend:
    """One trend per series; the catalog version invalidates it when the file changes."""
    c: Catalog = common.catalog()
    return change.compute_trend([d.id for d in change.catalog_series(c, name)], catalog=c)


def series_view() -> None:
    """A time slider over the vintages of a series: the map shows the interval ending at the chosen
    vintage, the chart every interval's ZAN flows (the chosen one opaque) and the cumulated net."""
    with st.sidebar:
        st.header("Series")
        name = st.selectbox("Series", cat.series_names(), key="change_series")
    mode, opacity = map_options()
    trend = common.guarded(lambda: compute_series(name, common.catalog_version()))
    if trend is None:
        return
    vintages = [s.vintage or s.name for s in trend.sources]
    st.subheader(f"Series {name}: {len(vintages)} vintages, {' · '.join(vintages)}")
    if trend.simulated:
        st.warning("**SIMULATED vintages in this series:** " + ", ".join(
            f"{s.vintage} ({s.name})" for s in trend.sources if s.simulated) + " were made by "
            "`scripts/make_simulated_vintage.py`, not observed by IGN. Their intervals show how the tool works, "
            "not what happened on the ground.", icon="⚠️")
    stop = st.select_slider("Time: the interval ending at", options=change_trend.slider_options(vintages),
                            value=vintages[1], key="change_time")
    i = vintages.index(stop)
    res = trend.intervals[i - 1]
    before, after = cat.get(res.before.dataset_id), cat.get(res.after.dataset_id)
    words = views.SOURCE_WORDS
    st.caption(f"Interval {i}: **{before.label}** ({words.get(res.before.kind, res.before.kind)}) → "
               f"**{after.label}** ({words.get(res.after.kind, res.after.kind)})")
    z, table = res.zan(), trend.table()
    whole = table[table["region"] == "(all)"]
    c1, c2, c3 = st.columns(3)
    c1.metric("Artificialisation", f"{z['artificialisation_ha']:.4f} ha")
    c2.metric("De-artificialisation", f"{z['deartificialisation_ha']:.4f} ha")
    c3.metric("Net since the first vintage", f"{whole['cumulative_net_ha'].iloc[i - 1]:.4f} ha")
    chart_col, map_col = st.columns([2, 3])
    with chart_col:
        st.plotly_chart(change_trend.trend_figure(table, i), width="stretch", key=f"trend-{i}")
    with map_col:
        m = common.guarded(lambda: change_map.pair_map(cat, before, after, base, mode, opacity))
        if m is not None:
            common.render_map(m, key=f"series-{before.id}-{after.id}-{mode}", height=420)
        st.html(change_map.flow_legend_html() if mode == "flow" else webmap.legend_html(views.changed_to(res)))
    st.dataframe(views.trend_table_view(table), hide_index=True, width="stretch")
    st.download_button("Download trend.csv", table.to_csv(index=False, float_format="%.17g"), file_name="trend.csv",
                       mime="text/csv")
    st.caption(f"Same figures from the command line: `flair-viz trend --series {name} --out DIR` "
               f"(or `flair-viz trend {' '.join(s.name for s in trend.sources)} --out DIR`)")


def predictions_view() -> None:
    """Change between a model's predictions of two image vintages, with the uncertain change counted apart.

    Streamlit never imports torch: the page runs `flair-viz change --model` in a child process (which predicts
    once per image and model, cached) and shows the files it wrote; a result already on disk is shown at once.
    """
    ids = [d.id for d in cat.by_role("image")]
    labels = views.model_labels(common.guarded(lambda: common.server_models(base)) or [])
    with st.sidebar:
        st.header("Images and model")
        a_default, b_default = views.default_images(ids)
        a_id = st.selectbox("Earlier image", ids, index=a_default, format_func=lambda i: cat.get(i).label)
        b_id = st.selectbox("Later image", ids, index=b_default, format_func=lambda i: cat.get(i).label)
        model = st.selectbox("Model", list(labels), format_func=labels.get)
        threshold = st.slider("Uncertain where the model's lead is below", 0.05, 0.9,
                              change.DEFAULT_MARGIN_THRESHOLD, 0.05,
                              help="The lead is the probability of the model's top class minus that of the "
                                   "runner-up (top-1 − top-2). A changed pixel is uncertain change where the lead "
                                   "is below this value at either date; raise it to be stricter.")
    a, b = cat.get(a_id), cat.get(b_id)
    st.subheader("Change from predictions")
    if a.simulated or b.simulated:
        st.warning("**SIMULATED image vintage.** " + "; ".join(d.title or d.id for d in (a, b) if d.simulated)
                   + ". Made by `scripts/make_simulated_vintage.py`, not photographed by IGN.", icon="⚠️")
    run = views.predictions_run(model, a, b, threshold, cat.source)
    done = run.done()
    if st.button("Predict both images and compare" if not done else "Recompute", key="change_predict"):
        with st.spinner(f"{model} predicts {a_id} and {b_id} (once per image; cached)…"):
            done = common.run_command(run.argv, what=f"Change from {model}'s predictions of {a_id} and {b_id}")
        if not done:
            st.code(run.command)
            return
        st.rerun()  # drawn again from the files on disk, the button now offering "Recompute"
    if not done:
        st.info("Not computed yet for these images, model and threshold. The button runs the command below.")
        st.code(run.command)
        change_map_view(a, b, None)
        return
    u, s = run.figures()
    for row in views.prediction_figures(u, s):
        for col, fig in zip(st.columns(len(row)), row):
            col.metric(fig.label, fig.value, help=fig.help)
    st.markdown(views.prediction_notes(u, s))
    change_map_view(a, b, run.out / "confidence.tif")
    with st.expander("Files and the same figures from the command line"):
        st.markdown(f"The change, flow and confidence COGs (with QGIS styles) and the tables are in `{run.out}`.")
        st.code(run.command, language="bash")


@st.cache_data(max_entries=4, show_spinner=False)
def cached_overlays(path: str, mtime: float) -> change_map.Overlays:
    """The confidence COG reprojected once per file version, not on every rerun (a zone's COG takes seconds)."""
    return change_map.confidence_overlays(path)


def change_map_view(a, b, confidence) -> None:
    """The aerial images of both dates under the swipe, and the model's sure and uncertain change on top."""
    st.subheader("Map")
    st.caption(f"Drag the bar: left the earlier image (**{a.vintage or a.id}**), right the later one "
               f"(**{b.vintage or b.id}**). "
               + ("Red and amber pixels are the model's sure and uncertain change; switch each layer in the box "
                  "at the top right." if confidence else "The change layers appear once the change is computed."))
    overlays = cached_overlays(str(confidence), confidence.stat().st_mtime) if confidence else None
    m = common.guarded(lambda: change_map.predictions_map(a, b, base, overlays))
    common.map_with_legend(m, f"predictions-{a.id}-{b.id}-{confidence or ''}", "Change layers",
                           change_map.confidence_legend_html())

if view == "series":
    series_view()
    common.footer()
    st.stop()
if view == "predictions":
    predictions_view()
    common.footer()
    st.stop()

CUSTOM = "__custom__"
with st.sidebar:
    st.header("Pair")
    options = [i for i in range(len(pairs))] + [CUSTOM]
    choice = st.selectbox("Vintages", options, key="change_pair", help=change_pairs.LIKE_WITH_LIKE_HELP,
                          format_func=lambda i: "Choose two rasters…" if i == CUSTOM else pairs[i].label)
    ids = [d.id for d in rasters]
    if choice == CUSTOM or not pairs:
        before_id = st.selectbox("Before (earlier)", ids, format_func=lambda i: cat.get(i).label)
        after_id = st.selectbox("After (later)", ids, index=min(1, len(ids) - 1), format_func=lambda i: cat.get(i).label)
    else:
        before_id, after_id = pairs[choice].before.id, pairs[choice].after.id
mode, opacity = map_options()
with st.sidebar:
    st.header("Options")
    grouping_file = st.file_uploader("ZAN grouping (TOML)", type=["toml"],
                                     help="Leave empty for the default grouping (flair_viz/change/zan_grouping.toml).")
    regions_file = st.file_uploader("Regions (GeoPackage / GeoJSON)", type=["gpkg", "geojson", "json"],
                                    help="Polygons such as communes, for a per-region table.")
    region_field = st.text_input("Region name column (optional)", "")


@st.cache_resource(max_entries=16, show_spinner="Counting the from-to matrix…")
def compute(before_id: str, after_id: str, grouping: str | None, regions: str | None, field: str | None,
            catalog_version: float) -> change.ChangeResult:
    """One computation per pair and options; the catalog version invalidates it when the file changes."""
    c: Catalog = common.catalog()
    return change.compute_change(before_id, after_id, catalog=c, grouping=grouping, regions=regions,
                                 region_name_field=field or None)


try:
    grouping_path = change.store_upload(grouping_file.getvalue(), grouping_file.name, "grouping") if grouping_file else None
    regions_path = change.store_upload(regions_file.getvalue(), regions_file.name, "regions") if regions_file else None
    result = compute(before_id, after_id, str(grouping_path) if grouping_path else None,
                     str(regions_path) if regions_path else None, region_field.strip() or None, common.catalog_version())
except FlairVizError as exc:
    common.show_error(exc)
    common.footer()
    st.stop()

before, after = cat.get(before_id), cat.get(after_id)
mixed = change_pairs.mixed_reason(before, after)
if mixed:
    st.warning(f"**Not land change alone:** {mixed}. Compare two ground truths, or two predictions of one model, "
               "for change on the ground.", icon="⚠️")
if result.simulated:
    st.warning("**SIMULATED data.** At least one vintage of this pair was made by "
               "`scripts/make_simulated_vintage.py` (invented buildings, roads and clear cuts), "
               "not observed by IGN. The figures show how the tool works, not what happened on the ground.",
               icon="⚠️")
st.caption(f"Before: **{before.label}** · After: **{after.label}**")
for note in result.summary()["alignment"]["notes"]:
    st.info(note)

# -- headline figures ------------------------------------------------------------------------------
zan = result.zan()
c1, c2, c3, c4 = st.columns(4)
c1.metric("Artificialisation", f"{zan['artificialisation_ha']:.4f} ha",
          help="Natural, agricultural or forest land that became artificial")
c2.metric("De-artificialisation", f"{zan['deartificialisation_ha']:.4f} ha",
          help="Artificial land that became natural, agricultural or forest")
c3.metric("Net artificialisation", f"{zan['net_artificialisation_ha']:.4f} ha")
c4.metric("Area compared", f"{result.valid_area_ha():.4f} ha",
          help=f"Overlap of both vintages with a class at both dates; {result.changed_area_ha():.4f} ha changed")

# -- check against real change masks (pairs whose catalog entries list some) -----------------------
checks = common.guarded(lambda: change.catalog_mask_agreements(cat, before, after)) or []
if checks:
    st.subheader("Check against real change masks")
    found = views.mask_check(checks, change.pair_masks(cat, before, after),
                             tuple(result.summary()["grid"]["overlap_bounds"]))
    st.markdown(f"{found.checked} **{found.found}**")
    for line in found.lines:
        st.markdown(f"- {line}")
    st.caption("A change mask (listed in the catalog as `extra.change_masks`) marks pixels a person saw change. "
               "Each changed mask pixel is taken at its centre on the before raster's grid.")

# -- map -------------------------------------------------------------------------------------------
m = common.guarded(lambda: change_map.pair_map(cat, before, after, base, mode, opacity))
st.subheader("Map")
st.caption(f"Drag the bar: left **{before.vintage or before.id}**, right **{after.vintage or after.id}**. "
           "The change layer on top shows changed pixels only"
           + (" (flow colours use the default grouping)." if grouping_file else "."))
common.map_with_legend(m, f"change-{before.id}-{after.id}-{mode}", "Change layer",
                       change_map.flow_legend_html() if mode == "flow"
                       else webmap.legend_html(views.changed_to(result)))

# -- from-to matrix and flows ----------------------------------------------------------------------
st.subheader("From-to matrix (hectares)")
hide_diag = st.checkbox("Hide unchanged land (diagonal)", value=True)
st.plotly_chart(charts.from_to_heatmap(*views.from_to_view(result, hide_diag)), width="stretch")

st.subheader("Main flows")
flows = views.main_flows(result, before.vintage or "before", after.vintage or "after")
if flows is not None:
    st.plotly_chart(charts.flows_sankey(flows), width="stretch")
    st.caption("Links: red = artificialisation, green = de-artificialisation, grey = other change.")
else:
    st.info("No pixel changed class between these two vintages.")
st.dataframe(views.totals_table(result), hide_index=True, width="stretch")

# -- grouping, regions, downloads ------------------------------------------------------------------
with st.expander(f"ZAN grouping used: {result.grouping.source}", expanded=False):
    for group, names in views.grouping_lines(result).items():
        st.markdown(f"**{group}**: {names}")
    st.code(result.grouping.text, language="toml")

if result.regions is not None:
    st.subheader("By region")
    st.dataframe(views.region_table_view(result.region_table()), hide_index=True, width="stretch")
    st.download_button("Download the region table (CSV)", change_outputs.regions_csv(result), file_name="regions.csv",
                       mime="text/csv")

d1, d2 = st.columns(2)
d1.download_button("Download the from-to matrix (CSV, ha)", change_outputs.from_to_csv(result), file_name="from_to.csv",
                   mime="text/csv")
d2.download_button("Download the summary (JSON)", json.dumps(result.summary(), indent=2, ensure_ascii=False),
                   file_name="summary.json", mime="application/json")
st.caption(f"Same figures from the command line: `flair-viz change {before.id} {after.id} --out DIR`")

common.footer()
