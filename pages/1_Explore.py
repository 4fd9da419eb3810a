"""Explore: the aerial image, its ground truth and live model predictions on one map."""

from __future__ import annotations

import streamlit as st

from flair_viz.core import config
from flair_viz.web import browse, explore
from flair_viz.web import maps as webmap
from ui import common
from ui import corrections as correct_panel

common.setup("Explore")
st.title("Explore")

cat = common.require(common.catalog)  # a missing or broken catalog is an st.error, not a traceback
base = common.require(common.tiles_url)
# A deep link (from Metrics, the home story or ?patch=) stays active until another patch is chosen.
link = explore.take_deep_link(st.session_state, st.query_params)

images = browse.image_table(cat)  # filters answered from the index: a FLAIR release has 100,000 patches
if images.empty:
    st.warning("The catalog has no aerial images. Register a FLAIR folder with `flair-viz catalog scan DIR`.")
    common.footer()
    st.stop()
cards = common.guarded(lambda: common.server_models(base)) or []
card_by_id = {c["id"]: c for c in cards}

with st.sidebar:
    st.header("Patch")
    domains = browse.options(images)[0]
    chosen_domains = st.multiselect("Domain", domains, placeholder="all domains")
    _, zones, years = browse.options(images, chosen_domains)
    chosen_zones = st.multiselect("Zone", zones, placeholder="all zones")
    chosen_years = st.multiselect("Year", years, placeholder="all years")
    linked_patch = link.pop("patch", None)
    listing = browse.browse(cat, chosen_domains, chosen_zones, chosen_years, keep=linked_patch, table=images)
    scenes = listing.scenes
    if listing.limited:
        st.caption(f"{listing.total:,} images match: zone mosaics are listed; choose a domain or zone to list "
                   "its patches one by one.")
    ids = [s.image.id for s in scenes]
    wanted = explore.find_scene(scenes, linked_patch)
    if wanted is not None and wanted.image.id in ids:
        st.session_state["explore_scene"] = wanted.image.id
    scene_by_id = {s.image.id: s for s in scenes}  # one lookup per option, not a scan: zones hold thousands
    scene_id = st.selectbox("Patch", ids, key="explore_scene", format_func=lambda i: scene_by_id[i].label)
    scene = scene_by_id[scene_id]
    link = explore.keep_link_for(st.session_state, link, scene.image.id)  # another patch: the link no longer applies

    st.header("Layers")
    presets = explore.available_presets(scene.image)
    preset = st.radio("Image bands", presets, horizontal=True, key="explore_preset",
                      format_func=lambda p: {"rgb": "RGB", "irc": "IRC (NIR,R,G)", "elevation": "Elevation"}[p])
    opacity = st.slider("Class layer opacity", 0.0, 1.0, 0.7, 0.05, key="explore_opacity")
    basemap = None
    if config.basemap_url():  # only offered when an operator configured one; never needed
        if st.checkbox("Online basemap (needs internet)", value=False, key="explore_basemap"):
            basemap = config.basemap_url()
    view = st.radio("View", ["Swipe", "Side by side"], horizontal=True, key="explore_view",
                    help="Swipe: drag the bar to compare two class layers over the image. "
                         "Side by side: one panel per layer.")

    st.header("Model")
    usable, models_note = explore.usable_models(scene.image, cards)  # a stack may lack a model's band
    if models_note:
        st.info(models_note)
    model_ids = st.multiselect("Live predictions (pick two to compare A vs B)", usable,
                               default=explore.model_defaults(st.session_state, link, usable),
                               max_selections=2, key="explore_models",
                               format_func=lambda i: card_by_id[i]["title"])
    live_layer = st.radio("Prediction layer", list(explore.LIVE_LAYER_NAMES), horizontal=False, key="explore_live",
                          format_func=explore.LIVE_LAYER_NAMES.get,
                          help="Errors need a ground truth for the patch.")
    device_slot = st.empty()  # filled after the map: asking the server loads torch there, which takes seconds

    st.header("Correct")
    correcting = st.toggle("Paint corrections", key="explore_correct",
                           help="Draw the right class over wrong predictions (Swipe view), then fine-tune on them.")
    paint_class = correct_panel.class_picker() if correcting else None

for mid in model_ids:
    if card_by_id[mid].get("demo"):
        st.warning(f"**{card_by_id[mid]['title']}** is a DEMO model, trained from scratch on a CPU on other zones (its "
                   "card names them). Its predictions show how the tool works, not how good a real model is.",
                   icon=":material/science:")
if model_ids and (too_large := explore.live_zoom_note(scene.image)):
    st.info(too_large)
if live_layer == "error" and not scene.truth:
    st.info("This patch has no ground truth, so there is no error layer; showing predictions instead.")
    live_layer = "class"

layers = explore.scene_layers(scene, cat, base, preset=preset, models=model_ids, live_layer=live_layer,
                              deep_link=link)
bounds = layers.bounds
caption = scene.label + (" · with its ground truth" if scene.truth else " · no ground truth")
if scene.image.extra.get("stack"):  # a [[stack]]: one image of BD ORTHO dalles, with no patches to list
    caption += " · one seamless image made of its dalles: pan across it"
elif scene.kind == "mosaic":  # a whole zone (or domain) as one map; its patches stay in the list
    caption += " · a mosaic of adjacent patches: pan across it, or pick one patch in the list"
if model_ids:
    caption += " · live predictions are computed tile by tile as you pan; the first view takes a few seconds"
st.caption(caption)

# Continuous layers get their colour scale, on the map and in the legend below it.
image_scale = webmap.elevation_scale() if preset == "elevation" else None
live_scale = webmap.uncertainty_scale(live_layer) if model_ids and live_layer in ("entropy", "margin") else None


def add_scales(m, image: bool = True, live: bool = True) -> None:
    for scale in (image_scale if image else None, live_scale if live else None):
        if scale is not None:
            webmap.add_colour_scale(m, scale)


# Every map of a patch shares one remembered view (view_key): a sidebar change rebuilds the map where the
# analyst left it, and side-by-side panes move together.
if view == "Swipe":
    m = webmap.make_map(bounds, min_zoom=layers.min_zoom, view_key=scene.image.id)
    if basemap:  # under everything else
        webmap.add_basemap(m, basemap)
    webmap.tile_layer(layers.image_url, f"Aerial {preset.upper()}", bounds, overlay=False).add_to(m)
    pair = layers.class_layers[:2]
    if len(pair) == 2:
        webmap.add_side_by_side(m, webmap.tile_layer(pair[0][1], pair[0][0], bounds, opacity),
                                webmap.tile_layer(pair[1][1], pair[1][0], bounds, opacity))
        st.markdown(f"⟵ **{pair[0][0]}** &nbsp;|&nbsp; **{pair[1][0]}** ⟶")
    elif pair:
        webmap.tile_layer(pair[0][1], pair[0][0], bounds, opacity).add_to(m)
    # The other layers are offered switched off: drawn on top, they would cover both halves of the swipe.
    for name, url in layers.class_layers[2:] + layers.hidden:
        webmap.tile_layer(url, name, bounds, opacity, show=False).add_to(m)
    if correcting:  # corrections in class colours, and the draw tools
        correct_panel.add_to_map(m, scene)
    webmap.add_layer_control(m)
    webmap.add_tile_progress(m)
    add_scales(m)
    drawn = common.render_map(m, key=f"swipe-{scene.image.id}-{len(layers.class_layers)}"
                              + (f"-c{st.session_state.get('corr_round', 0)}" if correcting else ""),
                              returned_objects=["all_drawings"] if correcting else None)
    if correcting:
        correct_panel.after_map(drawn, paint_class, scene, model_ids, card_by_id, bounds)
else:
    if correcting:
        st.info("Switch the view to Swipe to paint corrections.")
    panels = [(f"Aerial {preset.upper()}", None)] + layers.class_layers + layers.hidden  # one panel each: none covers another
    for row_start in range(0, len(panels), 3):
        cols = st.columns(3)
        for col, (name, url) in zip(cols, panels[row_start:row_start + 3]):
            with col:
                st.markdown(f"**{name}**")
                m = webmap.make_map(bounds, min_zoom=layers.min_zoom, view_key=scene.image.id)
                webmap.tile_layer(layers.image_url, "Aerial", bounds, overlay=False).add_to(m)
                if url:
                    webmap.tile_layer(url, name, bounds, opacity).add_to(m)
                webmap.add_tile_progress(m)
                add_scales(m, image=not url, live=bool(url) and "/predict/" in url)  # the scale of what it shows
                common.render_map(m, key=f"panel-{scene.image.id}-{name}", height=420)

if model_ids:
    device = common.guarded(lambda: common.server_device(base, model_ids[0]))
    if device:
        device_slot.caption(f"Inference device: **{device}**")

with st.expander("Legend", expanded=True):
    for scale in (image_scale, live_scale):
        if scale is not None:
            st.html(webmap.colour_scale_html(scale))
    st.markdown("**FLAIR-1 classes**")
    st.html(webmap.legend_html())
    if live_layer == "error":
        st.caption("Errors: red where the prediction differs from the ground truth.")
    if explore.confusion_caption(link):
        st.caption(explore.confusion_caption(link))

common.footer()
