"""FLAIR Viz entry point: the home page (the story in a few lines) and the navigation to each page."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from flair_viz.web import story
from ui import common

PAGES = [  # (file, title, icon, one-line pitch)
    ("pages/1_Explore.py", "Explore", ":material/map:", "Aerial image, ground truth and predictions side by side."),
    ("pages/2_Metrics.py", "Metrics", ":material/bar_chart:", "Per-class confusion, FLAIR-protocol mIoU, click to the map."),
    ("pages/3_Change.py", "Change", ":material/compare:", "What changed between two vintages, in hectares (ZAN flows)."),
    ("pages/4_Annotate.py", "Annotate", ":material/edit_location_alt:", "Rank uncertain places, select regions, export for annotators."),
    ("pages/5_Overview.py", "Overview", ":material/public:", "Every patch on one map, coloured by domain, date or score."),
]
HERE = Path(__file__).resolve().parent


@st.cache_data(show_spinner="Scoring the demo predictions…")
def _figures(catalog_version: float) -> story.DemoFigures:
    return story.demo_figures(common.catalog())


def home() -> None:
    common.setup("Home")
    st.title("FLAIR Viz")
    st.markdown(
        """
**Why.** France's *Zéro Artificialisation Nette* law (ZAN, 2021) asks every territory to halve, then stop,
the conversion of natural, agricultural and forest land into sealed or urban land — about
**20–30 thousand hectares a year** nationally. Measuring it needs land-cover maps of the whole country, updated often.

**How IGN does it.** **CoSIA** (*Couverture du Sol par IA*) predicts land cover per pixel from 0.2 m aerial
images with deep networks, and **OCS GE** is the reference land-cover database built from it.
The **FLAIR** challenges publish the training data: 512×512 px patches, 5 bands (R, G, B, near-infrared,
elevation) and masks of 19 classes.

**What this app does.** It puts the aerial image, the ground truth and live model predictions on one map,
shows where a model is wrong, measures change between vintages in hectares, and helps choose what to annotate next.
"""
    )
    st.subheader("The story in four steps")
    cards = common.guarded(lambda: common.server_models(common.tiles_url())) or []
    figures = common.guarded(lambda: _figures(common.catalog_version()))
    if figures is not None:
        for step in story.steps(common.catalog(), figures, [c["id"] for c in cards]):
            with st.container(border=True):
                left, right = st.columns([5, 1])
                left.markdown(f"**{step.title}** — {step.text}")
                if step.figure:
                    left.markdown(f"#### {step.figure}")
                if right.button("Show me", key=f"story-{step.key}", type="primary"):
                    if step.page.endswith("Explore.py"):
                        st.session_state["explore"] = step.link
                    elif step.link.get("change_pair") is not None:
                        st.session_state["change_pair"] = step.link["change_pair"]
                    st.switch_page(step.page)

    st.subheader("Pages")
    available = [p for p in PAGES if (HERE / p[0]).exists()]
    for col, (path, title, icon, pitch) in zip(st.columns(len(available)), available):
        with col:
            st.page_link(path, label=title, icon=icon)
            st.caption(pitch)
    common.footer()


# No page icons: Streamlit turns a page icon into the favicon and fetches Material ones from Google.
nav = [st.Page(home, title="Home", default=True)]
nav += [st.Page(path, title=title) for path, title, _, _ in PAGES if (HERE / path).exists()]
st.navigation(nav).run()
