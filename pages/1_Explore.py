"""Explore: the aerial image, its ground truth and model predictions on one map."""

from __future__ import annotations

import streamlit as st

from flair_viz import explore, webmap
from ui import common

common.setup("Explore")
st.title("Explore")

cat = common.catalog()
base = common.tiles_url()
deep_link: dict = st.session_state.pop("explore", None) or {}
if "patch" in st.query_params and not deep_link:
    deep_link = {"patch": st.query_params["patch"]}

scenes = explore.list_scenes(cat)
if not scenes:
    st.warning("The catalog has no aerial images. Register a FLAIR folder with `flair-viz catalog scan DIR`.")
    common.footer()
    st.stop()

with st.sidebar:
    st.header("Patch")
    domains = sorted({s.domain for s in scenes if s.domain})
    chosen_domains = st.multiselect("Domain", domains, placeholder="all domains")
    zones = sorted({s.zone for s in scenes if s.zone and (not chosen_domains or s.domain in chosen_domains)})
    chosen_zones = st.multiselect("Zone", zones, placeholder="all zones")
    shown = [s for s in scenes if (not chosen_domains or s.domain in chosen_domains)
             and (not chosen_zones or s.zone in chosen_zones)]
    ids = [s.image.id for s in shown] or [s.image.id for s in scenes]
    wanted = explore.find_scene(scenes, deep_link.get("patch"))
    if wanted is not None and wanted.image.id in ids:
        st.session_state["explore_scene"] = wanted.image.id
    scene_id = st.selectbox("Patch", ids, key="explore_scene",
                            format_func=lambda i: next(s.label for s in scenes if s.image.id == i))
    scene = next(s for s in scenes if s.image.id == scene_id)

    st.header("Layers")
    presets = explore.available_presets(scene.image)
    preset = st.radio("Image bands", presets, horizontal=True,
                      format_func=lambda p: {"rgb": "RGB", "irc": "IRC (NIR,R,G)", "elevation": "Elevation"}[p])
    opacity = st.slider("Class layer opacity", 0.0, 1.0, 0.7, 0.05)
    view = st.radio("View", ["Swipe", "Side by side"], horizontal=True,
                    help="Swipe: drag the bar to compare two class layers over the image. "
                         "Side by side: one panel per layer.")

layers = explore.scene_layers(scene, cat, base, preset=preset, deep_link=deep_link)
bounds = layers.bounds

st.caption(scene.label + (f" · ground truth: `{scene.truth.id}`" if scene.truth else " · no ground truth"))
if view == "Swipe":
    m = webmap.make_map(bounds)
    webmap.tile_layer(layers.image_url, f"Aerial {preset.upper()}", bounds, overlay=False).add_to(m)
    left, right = layers.class_layers[:2] if len(layers.class_layers) >= 2 else (layers.class_layers + [None])[:2]
    if left and right:
        webmap.add_side_by_side(m, webmap.tile_layer(left[1], left[0], bounds, opacity),
                                webmap.tile_layer(right[1], right[0], bounds, opacity))
        st.caption(f"Left of the bar: **{left[0]}** · right: **{right[0]}**")
    elif left:
        webmap.tile_layer(left[1], left[0], bounds, opacity).add_to(m)
    for name, url in layers.class_layers[2:]:
        webmap.tile_layer(url, name, bounds, opacity).add_to(m)
    webmap.add_layer_control(m)
    common.render_map(m, key=f"swipe-{scene.image.id}")
else:
    panels = [(f"Aerial {preset.upper()}", None)] + layers.class_layers
    cols = st.columns(len(panels))
    for col, (name, url) in zip(cols, panels):
        with col:
            st.markdown(f"**{name}**")
            m = webmap.make_map(bounds)
            webmap.tile_layer(layers.image_url, "Aerial", bounds, overlay=False).add_to(m)
            if url:
                webmap.tile_layer(url, name, bounds, opacity).add_to(m)
            common.render_map(m, key=f"panel-{scene.image.id}-{name}", height=420)

with st.expander("Legend (FLAIR-1 classes)", expanded=True):
    st.html(webmap.legend_html())

common.footer()
