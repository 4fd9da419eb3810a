"""The Explore page's corrections panel: class picker, save drawn shapes, the corrections table, fine-tune job.

Streamlit only: every decision is in :mod:`flair_viz.web.corrections` and :mod:`flair_viz.correct`.
The fine-tune runs as a ``flair-viz finetune`` subprocess (:mod:`flair_viz.correct.jobs`), so this
page never imports torch and stays responsive; a fragment polls its progress file every second.
"""

from __future__ import annotations

import geopandas as gpd
import shapely
import streamlit as st

from flair_viz.core import config
from flair_viz.core.errors import FlairVizError
from flair_viz.correct import jobs
from flair_viz.correct.store import CorrectionStore
from flair_viz.web import corrections as webcorr
from ui import common


def class_picker() -> int:
    """The FLAIR-1 class new shapes get (sidebar)."""
    return st.selectbox("Class to paint", webcorr.palette(), key="corr_class", format_func=webcorr.class_label,
                        help="Draw polygons, rectangles or lines (a brush) on the map, then save them with this class.")


def save_drawings(drawings: list, klass: int, scene, model_id: str, footprint_wgs84) -> None:
    """The 'Save corrections' button under the map."""
    store = CorrectionStore()
    st.markdown(f"{len(drawings)} shape(s) drawn, to save as " + webcorr.swatch_html(klass), unsafe_allow_html=True)
    brush = st.number_input("Brush half-width (m) for lines", 0.2, 20.0, 1.0, 0.2, key="corr_brush")
    if st.button("Save corrections", key="corr_save", type="primary"):
        try:
            foot = gpd.GeoSeries([shapely.box(*footprint_wgs84)], crs="EPSG:4326").to_crs("EPSG:2154").iloc[0]
            ids = store.add_features(drawings, klass, dataset_id=scene.image.id, footprint=foot, model_id=model_id,
                                     brush_m=float(brush))
            st.session_state["corr_round"] = st.session_state.get("corr_round", 0) + 1  # clears the sketch
            st.session_state["corr_flash"] = f"Saved {len(ids)} correction(s)"
            st.rerun()
        except FlairVizError as exc:
            common.show_error(exc)


def _job_panel(job_id: str, scene_patch: str | None) -> None:
    doc = common.guarded(lambda: jobs.status(job_id)) or {"state": "failed"}
    frac, text = webcorr.progress_of(doc)
    state = doc.get("state")
    if state in ("starting", "running", "evaluating"):
        st.progress(frac, text=text)
        if st.button("Cancel fine-tune", key="corr_cancel"):
            common.guarded(lambda: jobs.cancel(job_id))
            st.rerun(scope="app")
        return
    if state == "done":
        st.success(f"Fine-tuned model **{doc['model_id']}** is ready.")
        st.markdown(webcorr.figure_text(doc))
        table = webcorr.evaluation_table(doc.get("evaluation") or [])
        if len(table):
            st.caption("Against the ground truth of the corrected images (FLAIR-1 protocol). The fine-tuning pixels "
                       "are training pixels: only the other pixels say anything about accuracy.")
            st.dataframe(table, hide_index=True, width="stretch")
        if st.button("Swipe parent vs fine-tuned", key="corr_compare", type="primary"):
            common.server_models.clear()  # the tile server lists the new card on the next ask
            # a deep link sets the widgets before they are drawn on the next run (web/explore.take_deep_link)
            st.session_state["explore"] = {"patch": scene_patch, "models": [doc["parent"], doc["model_id"]],
                                           "view": "Swipe", "live_layer": "class"}
            st.rerun(scope="app")
    elif state == "cancelled":
        st.info("The fine-tune was cancelled; nothing was written.")
    else:
        st.error(f"**{doc.get('problem', 'The fine-tune failed')}**" + (f"\n\nFix: {doc['fix']}" if doc.get("fix") else ""))
    st.session_state.pop("corr_job_running", None)


@st.fragment(run_every=1.0)
def _poll(job_id: str, scene_patch: str | None) -> None:
    was_running = st.session_state.get("corr_job_running", False)
    _job_panel(job_id, scene_patch)
    if was_running and "corr_job_running" not in st.session_state:
        st.rerun(scope="app")  # finished: redraw the whole page once (new model in the picker)


def panel(scene, model_ids: list[str], card_by_id: dict) -> None:
    """Corrections of this image, their table, and the fine-tune controls."""
    store = CorrectionStore()
    if "corr_flash" in st.session_state:
        st.success(st.session_state.pop("corr_flash"))
    try:
        current = store.load()
    except FlairVizError as exc:
        common.show_error(exc)
        return
    mine = current[current["dataset_id"] == scene.image.id]
    st.subheader(f"Corrections ({len(mine)} on this image, {len(current)} in all)")
    st.caption(f"Stored in `{store.path}` (layer `corrections`, EPSG:2154); every change is written atomically.")
    if len(mine):
        common.edit_rows(mine, store.apply_table, key="corr_editor", editable=("class", "note"),
                         column_config={"class": st.column_config.SelectboxColumn(
                             "class", options=webcorr.palette(), required=True)},
                         save_label="Save table changes", flash_key="corr_flash")
    parents = [m for m in card_by_id if m in model_ids] or list(card_by_id)
    if not parents:
        return
    cols = st.columns(3)
    parent = cols[0].selectbox("Model to fine-tune", parents, key="corr_parent")
    epochs = cols[1].number_input("Epochs", 1, 500, 20, key="corr_epochs")
    train = cols[2].selectbox("Train", ["decoder", "head", "all"], key="corr_train",
                              help="decoder: decoder + head (encoder frozen, the default); all: the encoder too")
    job_id = st.session_state.get("corr_job")
    busy = bool(job_id and st.session_state.get("corr_job_running"))
    if st.button("Apply: fine-tune on these corrections", key="corr_apply", disabled=busy or current.empty):
        try:
            job_id = jobs.start(parent, store.path, webcorr.new_model_id(parent), epochs=int(epochs), train=train,
                                catalog=config.catalog_path())
            st.session_state["corr_job"] = job_id
            st.session_state["corr_job_running"] = True
        except (FlairVizError, OSError) as exc:
            common.show_error(exc) if isinstance(exc, FlairVizError) else st.error(f"Cannot start the fine-tune: {exc}")
    if job_id and st.session_state.get("corr_job_running"):
        _poll(job_id, scene.patch or scene.image.id)  # polls every second while the job runs
    elif job_id:
        _job_panel(job_id, scene.patch or scene.image.id)


def add_to_map(m, scene) -> None:
    """This image's corrections, in class colours, and leaflet-draw (polygon, rectangle, line = brush)."""
    from flair_viz.web import maps as webmap

    current = common.guarded(lambda: CorrectionStore().load())
    if current is not None and len(current[current["dataset_id"] == scene.image.id]):
        webcorr.corrections_layer(current, scene.image.id).add_to(m)
    webmap.add_draw_control(m, draw_options=webcorr.DRAW_OPTIONS, edit_options={"edit": False})


def after_map(drawn: dict | None, klass: int, scene, model_ids: list[str], card_by_id: dict, bounds) -> None:
    """Under the map: save what was drawn, then the corrections table and the fine-tune."""
    drawings = (drawn or {}).get("all_drawings") or []
    if drawings:
        save_drawings(drawings, klass, scene, model_ids[0] if model_ids else "", bounds)
    panel(scene, model_ids, card_by_id)
