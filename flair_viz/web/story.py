"""The stakeholder story's figures and destinations, decided without Streamlit.

Four steps: why (ZAN), the aerial image, what the model sees (with mIoU), what changed (hectares).
Each step names the page to open and the deep link to apply there, so the home page stays a thin
list of buttons and the browser test can walk the same steps. The story opens on the demo zone
(:data:`DEMO_ZONE`, 25 real adjacent FLAIR-1 patches) as one mosaic when the catalog has it, and its
mIoU is the demo model's on that zone, which the model never saw in training.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from flair_viz.core.catalog import Catalog, Dataset
from flair_viz.core.errors import FlairVizError

DEMO_ZONE = ("D034_2021", "Z6_NU")  # Hérault, 512 m: forest around a worked site; no shipped model trained on it

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
    zone_mosaic: str | None = None  # the demo zone's image mosaic (catalog ID), when the catalog has one
    scored_patches: int = 0  # how many patches the mIoU is over
    scored_zone: str | None = None  # "D034_2021/Z6_NU" when the mIoU is the demo zone's, else None (all pairs)


def _most_artificial_patch(cat: Catalog, zone: tuple[str, str] | None = None) -> str | None:
    """The patch whose ground truth holds the most building/impervious pixels: the best 'why' picture
    (only patches of ``zone`` = (domain, zone) when given and the zone has any)."""
    from flair_viz.core import classes, raster

    sealed = (classes.BY_KEY["building"].value, classes.BY_KEY["impervious"].value)
    truths = [t for t in cat.by_role("truth") if not t.simulated and t.patch]
    in_zone = [t for t in truths if zone and (t.domain, t.zone) == zone]
    best, best_n = None, -1
    for truth in in_zone or truths:
        data = classes.to_flair1(raster.read(truth.path, 1), truth.nomenclature)
        n = int(np.isin(data, sealed).sum())
        if n > best_n:
            best, best_n = truth.patch, n
    return best


def zone_mosaic(cat: Catalog, zone: tuple[str, str] = DEMO_ZONE) -> str | None:
    """The image mosaic of a (domain, zone), registered by the catalog scan, or None."""
    return next((d.id for d in cat.by_role("image") if d.extra.get("mosaic") == "/".join(zone)), None)


def warm_targets(cat: Catalog) -> list[Dataset]:
    """The images the story opens with a live model: the demo zone's mosaic (the map a new user is sent to),
    then step 3's patch (a few tiles, often cut from nothing else). The tile server predicts them as it starts
    (:func:`flair_viz.predict.live.warm`). Only for a catalog with the demo zone: elsewhere finding the
    'why' patch would read every ground truth."""
    zone = zone_mosaic(cat)
    if zone is None:
        return []
    patch = _most_artificial_patch(cat, DEMO_ZONE)
    patches = [d for d in cat.by_role("image") if patch and d.patch == patch and not d.extra.get("mosaic")]
    return [cat.get(zone)] + patches[:1]


def demo_figures(cat: Catalog) -> DemoFigures:
    """mIoU of the stored predictions on the demo zone (FLAIR-1 protocol; all pairs if the zone has none), the ZAN
    hectares of the first change pair of two ground truths (real pairs come before SIMULATED ones) and the 'why'
    patch: everything that reads rasters, computed once (the home page caches the result)."""
    from flair_viz import change, metrics

    model = miou = oa = scored_zone = None
    n_scored = 0
    pairs = metrics.catalog_pairs(cat)
    if pairs:
        model = _story_model({p.model for p in pairs})
        stored = _card_scores(model)
        if stored is not None:  # the card's own scores on the demo zone: nothing to count on a first visit
            miou, oa, n_scored, scored_zone = stored
        else:
            mine = [p for p in pairs if p.model == model]
            in_zone = [p for p in mine if (p.domain, p.zone) == DEMO_ZONE]
            run = metrics.evaluate(in_zone or mine)
            sc = metrics.scores(run.table.total(), "flair1")
            miou, oa, n_scored = sc.miou, sc.oa, len(run.table)
            scored_zone = "/".join(DEMO_ZONE) if in_zone else None
    art = deart = idx = None
    simulated = False
    cpairs = change.list_pairs(cat)
    if cpairs:
        # list_pairs puts real pairs first, so a real two-truth pair (the Gers strip) wins over the simulated ones
        idx = next((i for i, p in enumerate(cpairs) if p.before.role == "truth" and p.after.role == "truth"), 0)
        res = change.compute_change(cpairs[idx].before.id, cpairs[idx].after.id, catalog=cat)
        z = res.zan()
        art, deart, simulated = z["artificialisation_ha"], z["deartificialisation_ha"], res.simulated
    return DemoFigures(model, miou, oa, "flair1", art, deart, idx, simulated, _most_artificial_patch(cat, DEMO_ZONE),
                       zone_mosaic(cat), n_scored, scored_zone)


def _story_model(predicted: set[str]) -> str:
    """The model the story shows: the first card (the default one) that has stored predictions."""
    from flair_viz.predict.cards import in_card_order

    return in_card_order(predicted)[0]


def _card_scores(model_id: str) -> tuple[float, float, int, str] | None:
    """mIoU, OA, patch count and zone from the card's [scores] when they are the demo zone's (FLAIR-1 protocol).

    The card records them when its demo predictions are made (scripts/make_demo_predictions.py), so the
    home page quotes them instead of counting 25 patches on its first visit."""
    from flair_viz.predict import cards

    try:
        sc = cards.get_card(model_id).scores
    except FlairVizError:
        return None
    if sc.get("zone") != "/".join(DEMO_ZONE) or sc.get("protocol") != "flair1" or "miou" not in sc:
        return None
    return float(sc["miou"]), float(sc["oa"]), int(sc.get("patches", 0)), str(sc["zone"])


def steps(cat: Catalog, figures: DemoFigures, model_ids: list[str]) -> list[Step]:
    """The four steps, with where each 'show me' goes: the demo zone's mosaic first, when there is one."""
    images = [d for d in cat.by_role("image") if d.patch]
    why_patch = figures.why_patch or (images[0].patch if images else None)
    zone = figures.zone_mosaic
    aerial = zone or next((d.patch for d in images if d.patch != why_patch), why_patch)
    model = figures.model if figures.model in model_ids else (model_ids[0] if model_ids else None)
    where = (f"on zone {figures.scored_zone}: {figures.scored_patches} real patches the DEMO model never saw"
             if figures.scored_zone else f"on {figures.scored_patches} stored demo predictions")
    miou = (f"mIoU {figures.miou:.2f} · OA {figures.oa:.2f} {where} (FLAIR-1 protocol)"
            if figures.miou is not None else None)
    ha = None
    if figures.artificialised_ha is not None:
        ha = (f"{figures.artificialised_ha:.3f} ha artificialised, {figures.deartificialised_ha:.3f} ha returned to "
              f"nature{' (SIMULATED later vintage)' if figures.change_simulated else ' (real IGN labels of two vintages)'}")
    zone_text = (" This is a real FLAIR-1 zone of Hérault: 25 adjacent patches, 512 m across, shown as one map."
                 if zone else "")
    land = ("Here is land cover in IGN's ground truth, in the Hérault hills: deciduous forest "
            "(light green) covers most of it, with herbaceous vegetation (bright green) and brushwood (orange) around "
            "a large worked site of bare ground, tracks and lined cells, which the labels map as pervious surface "
            "(grey-brown)."
            if zone else "Here is land cover in IGN's ground truth: buildings in pink, impervious surfaces in red, "
            "forests in green.")
    return [
        Step("why", "1 · Why", "France artificialises 20–30 thousand hectares a year. The ZAN law wants that halved by "
             "2031 and stopped by 2050 — which needs land cover of the whole country, mapped often. " + land
             + zone_text,
             "pages/1_Explore.py", {"patch": zone or why_patch, "models": [], "opacity": 0.75, "view": "Swipe"}),
        Step("aerial", "2 · The aerial image", "IGN photographs France at 20 cm per pixel, in colour and near-infrared, "
             "with a surface elevation band. Vegetation glows red in the infrared view.",
             "pages/1_Explore.py", {"patch": aerial, "models": [], "preset": "irc", "opacity": 0.0}),
        Step("model", "3 · What the model sees", "A segmentation network labels every pixel with one of 19 classes. "
             "Swipe between the ground truth and the live prediction to see where it is right and wrong. The demo "
             "model was trained on CPU, from scratch, on other zones of Hérault (its card names them): a DEMO, scored "
             "on patches it never saw.",
             "pages/1_Explore.py", {"patch": why_patch, "models": [model] if model else [], "opacity": 0.7,
                                    "view": "Swipe", "live_layer": "class"}, miou),
        Step("change", "4 · What changed", "Comparing two vintages pixel by pixel gives hectares of natural, "
             "agricultural and forest land that became sealed — the figure ZAN asks every territory to report.",
             "pages/3_Change.py", {"change_pair": figures.change_pair_index}, ha),
    ]
