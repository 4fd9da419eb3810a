"""FLAIR Viz home page: the story in a few lines, and the way to each page."""

import streamlit as st

from ui import common

common.setup("Home", "🛰️")

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

cols = st.columns(4)
steps = [
    ("1 · Explore", "Aerial image, ground truth and predictions side by side.", "pages/1_Explore.py"),
    ("2 · Metrics", "Per-class confusion, FLAIR-protocol mIoU, click to the map.", "pages/2_Metrics.py"),
    ("3 · Change", "What changed between two vintages, in hectares (ZAN flows).", "pages/3_Change.py"),
    ("4 · Annotate", "Rank uncertain places, select regions, export for annotators.", "pages/4_Annotate.py"),
]
from pathlib import Path  # noqa: E402

for col, (title, text, page) in zip(cols, steps):
    with col:
        st.subheader(title)
        st.write(text)
        if Path(page).exists():
            st.page_link(page, label=f"Open {title.split('· ')[1]}", icon="➡️")

common.footer()
