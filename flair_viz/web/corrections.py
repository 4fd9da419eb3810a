"""What the Explore page's corrections panel shows, decided without Streamlit: palette, map layer, figures.

The page draws, stores (:mod:`flair_viz.correct.store`) and starts fine-tunes
(:mod:`flair_viz.correct.jobs`); this module turns their data into map layers and readable text and
tables, so tests can check them without a browser.
"""

from __future__ import annotations

import time

import folium
import geopandas as gpd
import pandas as pd

from flair_viz.core import classes

DRAW_OPTIONS = {"polyline": {"shapeOptions": {"weight": 8}}, "polygon": True, "rectangle": True, "circle": False,
                "marker": False, "circlemarker": False}


def palette() -> list[int]:
    """FLAIR-1 values offered by the class picker (1..19, in the IGN order)."""
    return [c.value for c in classes.FLAIR1_CLASSES]


def class_label(value: int) -> str:
    return f"{value} · {classes.BY_VALUE[value].name}"


def swatch_html(value: int) -> str:
    c = classes.BY_VALUE[value]
    return (f'<span style="display:inline-block;width:14px;height:14px;background:{c.color};border:1px solid #888;'
            f'vertical-align:middle"></span> {value} {c.name}')


def corrections_layer(gdf: gpd.GeoDataFrame, dataset_id: str | None = None) -> folium.GeoJson:
    """Corrections (of one image, or all) on the map, filled with their class colour."""
    shown = gdf if dataset_id is None else gdf[gdf["dataset_id"] == dataset_id]
    shown = shown.to_crs("EPSG:4326").copy()
    shown["label"] = [class_label(int(v)) for v in shown["class"]]
    shown["color"] = [classes.BY_VALUE[int(v)].color for v in shown["class"]]
    return folium.GeoJson(
        shown[["id", "label", "note", "color", "geometry"]].to_json(), name="Corrections",
        style_function=lambda f: {"color": "#000000", "weight": 1, "fillColor": f["properties"]["color"],
                                  "fillOpacity": 0.8},
        tooltip=folium.GeoJsonTooltip(fields=["label", "note"], aliases=["class", "note"]))


def new_model_id(parent: str, now: float | None = None) -> str:
    """A fresh, valid model ID for a fine-tune of ``parent`` (at most 64 characters)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now if now is not None else time.time()))
    return f"{parent[:40]}-ft-{stamp}"


def progress_of(doc: dict) -> tuple[float, str]:
    """(fraction 0..1, text) of a job's progress document."""
    state = doc.get("state", "starting")
    epochs, epoch = int(doc.get("epochs") or 1), int(doc.get("epoch") or 0)
    if state in ("done", "evaluating"):
        return 1.0, "Comparing parent and fine-tuned model on the ground truth…" if state == "evaluating" else "Done"
    if state == "running":
        loss = f", loss {doc['loss']:.3f}" if "loss" in doc else ""
        return epoch / epochs, f"Fine-tuning: epoch {epoch} of {epochs}{loss}"
    return 0.0, {"starting": "Starting the fine-tune…", "cancelled": "Cancelled", "failed": "Failed"}.get(state, state)


def figure_text(doc: dict) -> str:
    """The headline: how many corrected pixels each model predicts as painted."""
    n = int(doc["pixels"])
    b, a = int(doc["right_before"]), int(doc["right_after"])
    return (f"Inside your corrections ({n} px), the painted class is predicted on **{b} px ({100 * b / n:.1f} %)** "
            f"by {doc['parent']} and on **{a} px ({100 * a / n:.1f} %)** by {doc['model_id']}. "
            "These are training pixels: this shows the model learnt them, not that it is better.")


def evaluation_table(rows: list[dict]) -> pd.DataFrame:
    """Parent vs fine-tuned on ground truth, the pixels used for fine-tuning apart from the others."""
    if not rows:
        return pd.DataFrame(columns=["model", "role", "pixels", "truth_pixels", "overall_accuracy", "miou"])
    df = pd.DataFrame(rows)
    df["pixels"] = pd.Categorical(df["pixels"], ["other pixels", "fine-tuning pixels"])
    return df.sort_values(["pixels", "role"], ascending=[True, False]).reset_index(drop=True)
