"""Overview: every patch footprint of the catalog on one map, coloured by domain, date or a stored score."""

from __future__ import annotations

import streamlit as st

from flair_viz import metrics
from flair_viz.core.classes import protocol_names
from flair_viz.metrics import views as metric_views
from flair_viz.overview import layer
from flair_viz.overview import outline as france
from flair_viz.predict.cards import is_demo
from flair_viz.web import overview
from ui import common

common.setup("Overview")
st.title("Overview")

cat = common.require(common.catalog)
base = common.require(common.tiles_url)


@st.cache_data(show_spinner="Scoring the catalog's stored predictions…")
def _score(catalog_version: float, store: str) -> int:
    """Fill the metrics store with the catalog's pairs (stored rows are reused, only new pairs are counted)."""
    return len(metrics.evaluate(metrics.catalog_pairs(common.catalog()), store=store).table)


@st.cache_data(show_spinner=False)
def _scored_models(catalog_version: float) -> list[str]:
    """Models whose stored predictions have a ground truth (the default first), once per catalog version."""
    return overview.scored_models(common.catalog())


fp = common.require(lambda: layer.catalog_footprints(cat))
if not len(fp):
    st.warning("The catalog has no aerial patches with a footprint. Register a FLAIR folder with "
               "`flair-viz catalog scan DIR`.")
    common.footer()
    st.stop()

with st.sidebar:
    st.header("Colour")
    color_by = st.radio("Colour patches by", list(overview.COLOR_LABELS), format_func=overview.COLOR_LABELS.get,
                        key="overview_color")
    model = protocol = cls = truth_class = pred_class = None
    models = common.guarded(lambda: _scored_models(common.catalog_version())) or []
    if color_by not in ("domain", "date"):
        if not models:
            st.info("No stored predictions with a ground truth: nothing to score. Showing domains.")
            color_by = "domain"
        else:
            model = st.selectbox("Model", models, key="overview_model", format_func=metric_views.model_title)
            protocol = st.radio("Protocol", ["flair1", "full"], horizontal=True, key="overview_protocol")
            names = protocol_names(protocol)
            if color_by == "iou":
                cls = 1 + st.selectbox("Class", range(len(names)), format_func=lambda i: names[i], key="overview_cls")
            if color_by == "confusion":
                truth_class = 1 + st.selectbox("Truth class", range(len(names)), format_func=lambda i: names[i],
                                               key="overview_truth")
                pred_class = 1 + st.selectbox("Predicted as", range(len(names)), index=min(1, len(names) - 1),
                                              format_func=lambda i: names[i], key="overview_pred")
            common.guarded(lambda: _score(common.catalog_version(), str(metrics.default_store())))
    st.header("View")
    views = overview.view_choices(fp)
    wanted = st.query_params.get("view")
    if wanted in views and "overview_view" not in st.session_state:
        st.session_state["overview_view"] = wanted
    view = st.selectbox("Zoom to", views, key="overview_view")

if model and is_demo(model):
    st.warning("This is a DEMO model: its scores show where it fails, not how good a real model is.",
               icon=":material/science:")
colours = common.guarded(lambda: layer.catalog_colouring(cat, color_by, model, protocol or "flair1", cls,
                                                         truth_class, pred_class)[1])
bounds = overview.view_bounds(fp, view)
url = overview.overview_url(base, color_by, model, protocol or "flair1", cls, truth_class, pred_class)
shape = france.france_geojson()
st.caption(f"{overview.footprint_count(fp)}, drawn as map tiles by the tile server. Hover a patch for its zone and "
           "score; click it to open it in Explore."
           + (" Outline of France: Natural Earth (public domain)." if shape else ""))
if shape is None:
    st.caption("No outline of France: `static/vendor/world-atlas/countries-10m.json` is missing or unreadable. "
               "Run `scripts/install.sh` to add it.")
left, right = st.columns([4, 1])
with left:
    m = overview.overview_map(bounds, url, overview.COLOR_LABELS[color_by], shape,
                              score_model=None if model else (models[0] if models else None))
    out = common.render_map(m, key=f"overview-{view}", returned_objects=["last_clicked", "zoom"]) or {}
with right:
    if colours is not None:
        st.html(overview.legend_html(colours.legend))

click = out.get("last_clicked")
if click and click != st.session_state.get("overview_last_click"):
    st.session_state["overview_last_click"] = click  # act once per click, not on every rerun
    link = overview.clicked_patch(fp, click, out.get("zoom"))
    if link:
        st.session_state["explore"] = link
        st.switch_page("pages/1_Explore.py")
    else:
        st.info("No patch there: click on a coloured footprint.")

common.footer()
