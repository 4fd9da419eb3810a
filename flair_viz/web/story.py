"""The stakeholder story's figures and destinations, decided without Streamlit.

Four steps: why (ZAN), the aerial image, what the model sees (with mIoU), what changed (hectares).
Each step names the page to open and the deep link to apply there, so the home page stays a thin
list of buttons and the browser test can walk the same steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from flair_viz.core.catalog import Catalog


@dataclass(frozen=True)
class Step:
    key: str
    title: str
    text: str
    page: str
    link: dict = field(default_factory=dict)  # Explore deep link (session "explore") or Change pair
    figure: str | None = None  # a headline figure, already formatted


@dataclass(frozen=True)
class DemoFigures:
    model: str | None
    miou: float | None
    oa: float | None
    protocol: str
    artificialised_ha: float | None
    deartificialised_ha: float | None
    change_pair_index: int | None
    change_simulated: bool
    why_patch: str | None  # the patch with the most sealed land in its ground truth


def _most_artificial_patch(cat: Catalog) -> str | None:
    """The patch whose ground truth holds the most building/impervious pixels: the best 'why' picture."""
    from flair_viz.core import classes, raster

    sealed = (classes.BY_KEY["building"].value, classes.BY_KEY["impervious"].value)
    best, best_n = None, -1
    for truth in cat.by_role("truth"):
        if truth.simulated or not truth.patch:
            continue
        data = classes.to_flair1(raster.read(truth.path, 1), truth.nomenclature)
        n = int(np.isin(data, sealed).sum())
        if n > best_n:
            best, best_n = truth.patch, n
    return best


def demo_figures(cat: Catalog) -> DemoFigures:
    """mIoU of the stored predictions (FLAIR-1 protocol), the ZAN hectares of the first change pair of two ground
    truths (real pairs come before SIMULATED ones) and the 'why' patch: everything that reads rasters, computed
    once (the home page caches the result)."""
    from flair_viz import change, metrics

    pairs = metrics.catalog_pairs(cat)
    model = miou = oa = None
    if pairs:
        model = pairs[0].model
        run = metrics.evaluate([p for p in pairs if p.model == model])
        sc = metrics.scores(run.table.total(), "flair1")
        miou, oa = sc.miou, sc.oa
    art = deart = idx = None
    simulated = False
    cpairs = change.list_pairs(cat)
    if cpairs:
        # list_pairs puts real pairs first, so a real two-truth pair (the Gers strip) wins over the simulated ones
        idx = next((i for i, p in enumerate(cpairs) if p.before.role == "truth" and p.after.role == "truth"), 0)
        res = change.compute_change(cpairs[idx].before.id, cpairs[idx].after.id, catalog=cat)
        z = res.zan()
        art, deart, simulated = z["artificialisation_ha"], z["deartificialisation_ha"], res.simulated
    return DemoFigures(model, miou, oa, "flair1", art, deart, idx, simulated, _most_artificial_patch(cat))


def steps(cat: Catalog, figures: DemoFigures, model_ids: list[str]) -> list[Step]:
    """The four steps, with where each 'show me' goes."""
    images = [d for d in cat.by_role("image") if d.patch]
    why_patch = figures.why_patch or (images[0].patch if images else None)
    aerial_patch = next((d.patch for d in images if d.patch != why_patch), why_patch)
    model = model_ids[0] if model_ids else None
    miou = (f"mIoU {figures.miou:.2f} · OA {figures.oa:.2f} (FLAIR-1 protocol, demo model on its own training patches)"
            if figures.miou is not None else None)
    ha = None
    if figures.artificialised_ha is not None:
        ha = (f"{figures.artificialised_ha:.3f} ha artificialised, {figures.deartificialised_ha:.3f} ha returned to "
              f"nature{' (SIMULATED later vintage)' if figures.change_simulated else ' (real IGN labels of two vintages)'}")
    return [
        Step("why", "1 · Why", "France artificialises 20–30 thousand hectares a year. The ZAN law wants that halved by "
             "2031 and stopped by 2050 — which needs land cover of the whole country, mapped often. Here is what "
             "sealed land looks like in IGN's ground truth: buildings in pink, impervious surfaces in red.",
             "pages/1_Explore.py", {"patch": why_patch, "models": [], "opacity": 0.75, "view": "Swipe"}),
        Step("aerial", "2 · The aerial image", "IGN photographs France at 20 cm per pixel, in colour and near-infrared, "
             "with a surface elevation band. Vegetation glows red in the infrared view.",
             "pages/1_Explore.py", {"patch": aerial_patch, "models": [], "preset": "irc", "opacity": 0.0}),
        Step("model", "3 · What the model sees", "A segmentation network labels every pixel with one of 19 classes. "
             "Swipe between the ground truth and the live prediction to see where it is right and wrong.",
             "pages/1_Explore.py", {"patch": why_patch, "models": [model] if model else [], "opacity": 0.7,
                                    "view": "Swipe", "live_layer": "class"}, miou),
        Step("change", "4 · What changed", "Comparing two vintages pixel by pixel gives hectares of natural, "
             "agricultural and forest land that became sealed — the figure ZAN asks every territory to report.",
             "pages/3_Change.py", {"change_pair": figures.change_pair_index}, ha),
    ]
