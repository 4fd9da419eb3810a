"""Change: how many hectares were artificialised between two vintages, and where."""

from __future__ import annotations

import json

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from flair_viz import change
from flair_viz.change import outputs as change_outputs
from flair_viz.core import classes
from flair_viz.core.catalog import Catalog
from flair_viz.core.errors import FlairVizError
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

CUSTOM = "__custom__"
with st.sidebar:
    st.header("Pair")
    options = [i for i in range(len(pairs))] + [CUSTOM]
    choice = st.selectbox("Vintages", options, key="change_pair",
                          format_func=lambda i: "Choose two rasters…" if i == CUSTOM else pairs[i].label)
    ids = [d.id for d in rasters]
    if choice == CUSTOM or not pairs:
        before_id = st.selectbox("Before (earlier)", ids, format_func=lambda i: cat.get(i).label)
        after_id = st.selectbox("After (later)", ids, index=min(1, len(ids) - 1), format_func=lambda i: cat.get(i).label)
    else:
        before_id, after_id = pairs[choice].before.id, pairs[choice].after.id
    st.header("Map")
    mode = st.radio("Change layer colours", ["flow", "class"], horizontal=True,
                    format_func=lambda m: {"flow": "ZAN flow", "class": "New class"}[m])
    opacity = st.slider("Class layer opacity", 0.0, 1.0, 0.6, 0.05)
    st.header("Options")
    grouping_file = st.file_uploader("ZAN grouping (TOML)", type=["toml"],
                                     help="Leave empty for the default grouping (flair_viz/zan_grouping.toml).")
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

# -- map -------------------------------------------------------------------------------------------
try:
    bounds = webmap.dataset_bounds_wgs84(before)
    m = webmap.make_map(bounds)
    image = cat.for_patch(before.patch, "image") if before.patch else None
    if image is not None:
        webmap.tile_layer(webmap.dataset_tile_url(image.id, base), f"Aerial {image.id}", bounds,
                          overlay=False).add_to(m)
    left = webmap.tile_layer(webmap.dataset_tile_url(before.id, base), f"Before: {before.vintage or before.id}",
                             bounds, opacity)
    right = webmap.tile_layer(webmap.dataset_tile_url(after.id, base), f"After: {after.vintage or after.id}",
                              bounds, opacity)
    webmap.add_side_by_side(m, left, right)
    webmap.tile_layer(change.change_tile_url(before.id, after.id, mode, base), f"Change ({mode})", bounds).add_to(m)
    webmap.add_layer_control(m)
except FlairVizError as exc:
    common.show_error(exc)
    m = None
st.subheader("Map")
st.caption(f"Drag the bar: left **{before.vintage or before.id}**, right **{after.vintage or after.id}**. "
           "The change layer on top shows changed pixels only"
           + (" (flow colours use the default grouping)." if grouping_file else "."))
map_col, legend_col = st.columns([4, 1])
with map_col:
    if m is not None:
        common.render_map(m, key=f"change-{before.id}-{after.id}-{mode}")
with legend_col:
    st.markdown("**Change layer**")
    if mode == "flow":
        st.html(change.flow_legend_html())
    else:
        st.html(webmap.legend_html(sorted({a for _, a, _ in result.top_flows(19 * 19)})))

# -- from-to matrix and flows ----------------------------------------------------------------------
names = [c.name for c in classes.FLAIR1_CLASSES]
ft = result.from_to_ha()
present = [i for i in range(len(names)) if ft[i, :].sum() > 0 or ft[:, i].sum() > 0]
st.subheader("From-to matrix (hectares)")
hide_diag = st.checkbox("Hide unchanged land (diagonal)", value=True)
shown = ft.copy()
if hide_diag:
    shown[range(len(names)), range(len(names))] = 0
sub = shown[[[i] for i in present], present]
heat = go.Figure(go.Heatmap(z=sub, x=[names[i] for i in present], y=[names[i] for i in present],
                            colorscale="Reds", text=[[f"{v:.4f}" for v in row] for row in sub],
                            texttemplate="%{text}", hovertemplate="%{y} → %{x}: %{z:.4f} ha<extra></extra>",
                            colorbar={"title": "ha"}))
heat.update_layout(xaxis_title="after", yaxis_title="before", yaxis_autorange="reversed", height=460,
                   margin={"l": 10, "r": 10, "t": 10, "b": 10})
st.plotly_chart(heat, use_container_width=True)

flows = result.top_flows(12)
st.subheader("Main flows")
if flows:
    group = result.grouping.flow_matrix()
    src_vals = sorted({b for b, _, _ in flows})
    dst_vals = sorted({a for _, a, _ in flows})
    labels = [f"{classes.BY_VALUE[v].name} ({before.vintage or 'before'})" for v in src_vals] + \
             [f"{classes.BY_VALUE[v].name} ({after.vintage or 'after'})" for v in dst_vals]
    colours = [classes.BY_VALUE[v].color for v in src_vals + dst_vals]
    link_rgba = {k: f"rgba{(*rgba[:3], 0.55)}" for k, rgba in change.FLOW_COLORS.items()}
    sankey = go.Figure(go.Sankey(
        node={"label": labels, "color": colours, "pad": 14},
        link={"source": [src_vals.index(b) for b, _, _ in flows],
              "target": [len(src_vals) + dst_vals.index(a) for _, a, _ in flows],
              "value": [ha for _, _, ha in flows], "color": [link_rgba[group[b, a]] for b, a, _ in flows],
              "hovertemplate": "%{value:.4f} ha<extra></extra>"}))
    sankey.update_layout(height=420, margin={"l": 10, "r": 10, "t": 10, "b": 10})
    st.plotly_chart(sankey, use_container_width=True)
    st.caption("Links: red = artificialisation, green = de-artificialisation, grey = other change.")
else:
    st.info("No pixel changed class between these two vintages.")

table = pd.DataFrame({"class": names, "before (ha)": result.totals_before_ha(), "after (ha)": result.totals_after_ha(),
                      "net change (ha)": result.net_change_ha()}).iloc[present]
st.dataframe(table, hide_index=True, use_container_width=True)

# -- grouping, regions, downloads ------------------------------------------------------------------
with st.expander(f"ZAN grouping used: {result.grouping.source}", expanded=False):
    for g in change.GROUPS:
        st.markdown(f"**{g}**: " + (", ".join(classes.BY_KEY[k].name for k in result.grouping.groups[g]) or "—"))
    st.code(result.grouping.text, language="toml")

if result.regions is not None:
    st.subheader("By region")
    regions_table = pd.DataFrame(result.region_table())
    st.dataframe(regions_table, hide_index=True, use_container_width=True)
    st.download_button("Download the region table (CSV)", change_outputs.regions_csv(result), file_name="regions.csv",
                       mime="text/csv")

d1, d2 = st.columns(2)
d1.download_button("Download the from-to matrix (CSV, ha)", change_outputs.from_to_csv(result), file_name="from_to.csv",
                   mime="text/csv")
d2.download_button("Download the summary (JSON)", json.dumps(result.summary(), indent=2, ensure_ascii=False),
                   file_name="summary.json", mime="application/json")
st.caption(f"Same figures from the command line: `flair-viz change {before.id} {after.id} --out DIR`")

common.footer()
