"""Annotate: rank places worth labelling, pick or draw regions, keep them, export them for annotators."""

from __future__ import annotations

import shapely
import streamlit as st

from flair_viz import annotate as annotation
from flair_viz.annotate import selections
from flair_viz.core import classes
from flair_viz.core.errors import FlairVizError
from flair_viz.web import annotate as annotate_map
from flair_viz.web import maps as webmap
from ui import common

common.setup("Annotate", "✏️")
st.title("Annotate")
st.caption("Rank the places where the model is unsure, wrong, inconsistent or sees rare classes; select or draw "
           "regions; export them on the FLAIR patch grid (512 px at 0.2 m = 102.4 m) for annotators.")

GRIDS = {
    512: "FLAIR patch · 512 px (102.4 m)",
    128: "Sub-cells · 128 px (25.6 m), selections snap to their FLAIR patch",
}


# -- inputs -----------------------------------------------------------------------------------
# The tile server predicts and scores the cells (it holds the models and torch); the page only
# re-ranks them with the library's combine/pick on every slider move.
cat = common.require(common.catalog)  # a missing or broken catalog is an st.error, not a traceback
base = common.require(common.tiles_url)
images = cat.by_role("image")
patches = [d.id for d in images if d.patch] or [d.id for d in images]  # FLAIR patches first: the demo model's 5 bands
# demo models first, each group in the server's order (the registry's: the default model first)
cards = sorted(common.guarded(lambda: common.server_models(base)) or [], key=lambda c: not c.get("demo"))
card_by_id = {c["id"]: c for c in cards}
if not images or not cards:
    st.warning("Annotate needs aerial images in the catalog and a model card in `models/` "
               "(run `scripts/install.sh`, or `flair-viz models list` to see what is found).")
    common.footer()
    st.stop()

with st.sidebar:
    st.header("Scenes and model")
    model_id = st.selectbox("Model", list(card_by_id), key="ann_model",
                            format_func=lambda i: (card_by_id[i].get("title") or i)
                            + (" (demo)" if card_by_id[i].get("demo") else ""))
    model_b = st.selectbox("Second model (disagreement)", ["none"] + [i for i in card_by_id if i != model_id],
                           key="ann_model_b")
    model_b = None if model_b == "none" else model_b
    chosen = st.multiselect("Scenes to rank", [d.id for d in images], default=patches,
                            key="ann_scenes", format_func=lambda i: cat.get(i).label)
    single_patches = all(cat.get(i).patch for i in chosen)
    cell_px = st.radio("Grid", list(GRIDS), format_func=GRIDS.get, key="ann_grid", index=1 if single_patches else 0,
                       help="Each demo scene is a single FLAIR patch (one 102.4 m cell); sub-cells give several "
                            "candidates per patch. Whatever the grid, a selected candidate is stored as its FLAIR patch.")
    st.header("What makes a place worth labelling")
    st.caption("Each reason's weight in the combined score (0 = ignore it).")
    weights = {c: st.slider(annotate_map.WEIGHT_LABELS[c], 0.0, 3.0, 1.0, 0.25, key=f"ann_w_{c}",
                            help=annotate_map.WEIGHT_HELP[c]) for c in annotation.COMPONENTS}
    top = st.number_input("Top N", 1, 200, 10, key="ann_top")
    spacing = st.number_input("Spacing (m)", 0.0, 5000.0, 0.0, 10.0, key="ann_spacing",
                              help="Skip a cell whose centre lies closer than this to a better one already picked.")

if not chosen:
    st.info("Choose at least one scene in the sidebar.")
    common.footer()
    st.stop()

ranked = None
frames = []
for ds_id in chosen:  # a scene the model cannot read is reported, and the others are still ranked
    try:
        frames.append(common.candidate_cells(base, ds_id, model_id, model_b, int(cell_px), common.catalog_version()))
    except FlairVizError as exc:
        common.show_error(exc)
if frames:
    try:
        scored = annotation.combined(frames, weights)  # every cell: drawn regions average these
        ranked = annotation.pick(scored, int(top), float(spacing))
    except FlairVizError as exc:
        common.show_error(exc)
if ranked is None or ranked.empty:
    st.info("No candidate: nothing valid to score with these settings.")
    common.footer()
    st.stop()

table = annotation.candidate_table(ranked)
rare = ranked.attrs.get("rare_classes", [])
scored_ids = [str(f["dataset"].iloc[0]) for f in frames if len(f)]
scenes = {i: annotation.scene(cat, i) for i in scored_ids}
sel_store = selections.SelectionStore()
try:
    current = sel_store.load()
except FlairVizError as exc:
    common.show_error(exc)
    current = selections.empty()

# -- map --------------------------------------------------------------------------------------
st.subheader("Candidates")
left, right = st.columns([3, 1])
with right:
    map_scene = st.selectbox("Scene on the map", scored_ids, key="ann_map_scene",
                             index=scored_ids.index(table["dataset"].iloc[0]), format_func=lambda i: cat.get(i).label)
    snap_drawn = st.checkbox("Snap drawn regions to the FLAIR grid", value=True, key="ann_snap")
    st.markdown(annotate_map.score_legend_html(), unsafe_allow_html=True)
    st.caption("Click a candidate polygon to select it; draw rectangles or polygons with the tools on the map's left.")
    if rare:
        st.caption("Rare classes (under 2 % of predicted pixels): "
                   + ", ".join(classes.BY_VALUE[v].name for v in rare))

ds = cat.get(map_scene)
bounds = webmap.dataset_bounds_wgs84(ds)
m = webmap.make_map(bounds, min_zoom=webmap.floor_zoom(ds))
webmap.tile_layer(webmap.dataset_tile_url(ds.id, base_url=base), ds.label, bounds, overlay=False).add_to(m)
layer, on_map = annotate_map.candidates_layer(table[table["dataset"] == map_scene])
layer.add_to(m)
if len(current):
    annotate_map.selections_layer(current).add_to(m)
webmap.add_draw_control(m, draw_options={"polyline": False, "circle": False, "marker": False, "circlemarker": False,
                                         "rectangle": True, "polygon": True}, edit_options={"edit": False})
annotate_map.add_layer_control(m)
with left:
    out = common.render_map(m, key=f"annotate-{map_scene}-{st.session_state.get('ann_drawn_round', 0)}",
                            returned_objects=["last_object_clicked", "last_clicked", "all_drawings"]) or {}

# a click inside a candidate selects it
click = out.get("last_object_clicked") or out.get("last_clicked")
if click and click.get("lat") is not None and click != st.session_state.get("ann_last_click"):
    st.session_state["ann_last_click"] = click  # act once per click, not on every rerun
    hit = on_map[on_map.contains(shapely.Point(click["lng"], click["lat"]))]
    if len(hit):
        st.session_state["ann_pick"] = [hit["id"].iloc[0]]

with right:
    if "ann_flash" in st.session_state:
        st.success(st.session_state.pop("ann_flash"))
    pick = st.multiselect("Selected candidates", table["id"].tolist(), key="ann_pick",
                          format_func=lambda i: f"#{int(table.set_index('id').loc[i, 'rank'])} {i}")
    note = st.text_input("Note for new selections", key="ann_note")
    if st.button("Add selected candidates", key="ann_add", disabled=not pick, type="primary"):
        try:
            ids = sel_store.add_candidates(ranked[ranked["cell_id"].isin(pick)], note=note)
            st.session_state["ann_flash"] = f"Added {len(ids)} FLAIR patch(es): {', '.join(ids)}"
            st.rerun()  # redraw the map with the new selection
        except FlairVizError as exc:
            common.show_error(exc)
    drawings = out.get("all_drawings") or []
    if drawings:
        st.write(f"{len(drawings)} shape(s) drawn.")
        if st.button("Add drawn regions", key="ann_add_drawn"):
            try:
                ids = sel_store.add_drawn_features(drawings, scenes.values(), snap_to_grid=snap_drawn, note=note,
                                                   scored=scored)
                st.session_state["ann_drawn_round"] = st.session_state.get("ann_drawn_round", 0) + 1  # clears the sketch
                st.session_state["ann_flash"] = f"Added {len(ids)} drawn region(s)"
                st.rerun()
            except FlairVizError as exc:
                common.show_error(exc)

with st.expander(f"Top {len(table)} candidates (all scenes)", expanded=False):
    st.dataframe(table.drop(columns="geometry").round(3), hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(annotate_map.WEIGHT_LABELS[c],
                                                                 help=annotate_map.WEIGHT_HELP[c])
                                for c in annotation.COMPONENTS})

# -- selections -------------------------------------------------------------------------------
st.subheader(f"Selections ({len(current)})")
st.caption(f"Kept in `{sel_store.path.name}` in the app's data folder; every change is written atomically and "
           "survives a restart.")
if len(current):
    common.edit_rows(current, sel_store.apply_table, key="ann_editor", editable=("note", "status"),
                     column_config={"status": st.column_config.SelectboxColumn(
                         "status", options=list(selections.STATUSES), required=True),
                         "note": st.column_config.TextColumn("note"),
                         "remove": st.column_config.CheckboxColumn("remove")},
                     save_label="Save changes", flash_key="ann_flash")

    st.markdown("**Export** (EPSG:2154, score components, notes and status)")
    cols = st.columns(3)
    for col, (suffix, mime) in zip(cols, ((".gpkg", "application/geopackage+sqlite3"),
                                          (".geojson", "application/geo+json"), (".csv", "text/csv"))):
        with col:
            try:
                data = sel_store.export_bytes(suffix)
                st.download_button(f"Download {suffix[1:].upper()}", data, file_name=f"flair_selections{suffix}",
                                   mime=mime, key=f"ann_dl_{suffix[1:]}")
            except FlairVizError as exc:
                common.show_error(exc)

with st.expander("Import a previous export"):
    up = st.file_uploader("GeoPackage, GeoJSON or CSV export", type=["gpkg", "geojson", "json", "csv"], key="ann_up")
    if up is not None and st.button("Import", key="ann_import"):
        try:
            added, replaced = sel_store.import_bytes(up.getvalue(), up.name)
            st.success(f"Imported: {added} added, {replaced} replaced (the later `updated` wins)")
        except FlairVizError as exc:
            common.show_error(exc)

common.footer()
