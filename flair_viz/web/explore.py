"""What the Explore page shows, decided without Streamlit: scenes, presets, layer URLs, deep links, filters.

A *scene* is one aerial image plus whatever the catalog knows for the same patch (ground truth,
stored predictions). Keeping this here lets tests check the layer logic without a browser.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flair_viz.core.catalog import Catalog, Dataset
from flair_viz.core.classes import BY_VALUE, protocol_names
from flair_viz.core.describe import kind_of
from flair_viz.core.raster import PRESET_BANDS, describe
from flair_viz.core.stack import layers_fix
from flair_viz.predict import live, scene
from flair_viz.web.maps import Bounds, dataset_bounds_wgs84, dataset_tile_url, floor_zoom
from flair_viz.web.urls import tile_url


@dataclass(frozen=True)
class Scene:
    image: Dataset
    truth: Dataset | None = None
    predictions: tuple[Dataset, ...] = ()

    @property
    def patch(self) -> str | None:
        return self.image.patch

    @property
    def domain(self) -> str | None:
        return self.image.domain

    @property
    def zone(self) -> str | None:
        return self.image.zone

    @property
    def label(self) -> str:
        return self.image.label

    @property
    def kind(self) -> str:
        """``patch``, ``mosaic`` (a zone or domain: pan across it) or ``scene``."""
        return kind_of(self.image)


@dataclass
class SceneLayers:
    bounds: Bounds
    image_url: str
    class_layers: list[tuple[str, str]] = field(default_factory=list)  # (name, url template)
    min_zoom: int = 0  # the map stops where the tile server would refuse one of the layers' datasets
    # Layers a page may offer switched off (a Metrics click-through shows exactly its promised pair: drawn on top,
    # the predictions would cover both halves of the swipe).
    hidden: list[tuple[str, str]] = field(default_factory=list)


def _overlaps(a: Dataset, b: Dataset, headers: dict | None = None) -> bool:
    """Do two datasets' footprints intersect (compared in ``a``'s CRS)? ``headers`` memoises the reads."""
    from rasterio.warp import transform_bounds

    headers = {} if headers is None else headers
    for d in (a, b):
        if d.id not in headers:
            headers[d.id] = describe(d.path)
    ia, ib = headers[a.id], headers[b.id]
    bb = ib.bounds if ia.crs == ib.crs else transform_bounds(ib.crs, ia.crs, *ib.bounds)
    return ia.bounds[0] < bb[2] and bb[0] < ia.bounds[2] and ia.bounds[1] < bb[3] and bb[1] < ia.bounds[3]


def list_scenes(cat: Catalog, images: Sequence[Dataset] | None = None) -> list[Scene]:
    """Every aerial image (or only ``images``) with its ground truth and stored predictions.

    A zone mosaic (kind ``mosaic``) is a scene too, listed first in its zone, with the mask mosaic as its
    truth and its zone's prediction mosaics. Predictions of a patch match by patch ID; patch-less ones (a batch VRT mosaic over many scenes)
    match every image whose footprint they cover, unless the image already has a per-patch prediction of
    the same model, so batch results show up on the map once.
    """
    scenes, headers = [], {}
    linked: dict[str, list[Dataset]] = {}  # patch number or zone mosaic key -> its predictions, in catalog order
    mosaics = []
    for d in cat.by_role("prediction"):
        if d.patch:
            linked.setdefault(d.patch, []).append(d)
        else:
            mosaics.append(d)
            if d.extra.get("mosaic"):
                linked.setdefault(d.extra["mosaic"], []).append(d)
    for img in cat.by_role("image") if images is None else images:
        truth = cat.truth_of(img)
        preds = list(linked.get(img.patch or img.extra.get("mosaic") or "", []))  # a zone: its prediction mosaics
        models = {p.extra.get("model") for p in preds} - {None}
        preds += [m for m in mosaics if m.extra.get("model") not in models and _overlaps(img, m, headers)]
        scenes.append(Scene(img, truth, tuple(preds)))
    return sorted(scenes, key=lambda s: (s.domain or "~", s.zone or "", s.kind != "mosaic", s.image.id))


def find_scene(scenes: list[Scene], patch_or_id: str | None) -> Scene | None:
    if not patch_or_id:
        return None
    return next((s for s in scenes if patch_or_id in (s.patch, s.image.id)), None)


def available_presets(image: Dataset) -> list[str]:
    """Band presets this image can show (an RGB-only file has no IRC or elevation)."""
    return [p for p, bands in PRESET_BANDS.items() if all(b in image.bands for b in bands)] or ["rgb"]


def usable_models(image: Dataset, cards: Sequence[Mapping[str, Any]]) -> tuple[list[str], str | None]:
    """The models whose ``in_bands`` the image has, and what the page says about the others (for a stack, the
    layer to add): a model missing a band would fail on every tile, so it is not offered for this image."""
    if not image.bands:  # bands not declared: the file's layout decides, as before
        return [c["id"] for c in cards], None
    usable, left, missing = [], [], []
    for c in cards:
        lacks = [b for b in c.get("in_bands", ()) if b not in image.bands]
        (left if lacks else usable).append(f"{c.get('title') or c['id']} (needs {', '.join(lacks)})" if lacks
                                           else c["id"])
        missing += [b for b in lacks if b not in missing]
    if not left:
        return usable, None
    head = "No model fits this image" if not usable else f"{len(left)} model(s) left out for this image"
    return usable, (f"{head}: it has {', '.join(image.bands)}; {'; '.join(left)}. Register a model whose card "
                    f"reads these bands{layers_fix(missing)}.")


def live_zoom_note(image: Dataset) -> str | None:
    """What the page says over an image too large to predict whole (a BD ORTHO stack): its map opens at a
    distance where live prediction tiles are refused (:func:`flair_viz.predict.scene.check_size`), so
    the analyst is told the zoom where they appear instead of seeing failed tiles."""
    info = describe(image.path)
    if not scene.too_large(info):
        return None
    z = live.live_zoom(info, "WebMercatorQuad")
    return (f"This image is too large to predict whole for a distant view ({info.width * info.height / 1e6:,.0f} "
            f"megapixels): live predictions appear from zoom {z}, where they come from the pixels under each tile. "
            "Zoom in, or predict it once with `flair-viz predict` and open the result.")


def prediction_url(base: str, image_id: str, model_id: str, layer: str = "class") -> str:
    """Live prediction tiles of ``model_id`` over ``image_id`` (class, entropy, margin or error layer)."""
    return tile_url(f"/datasets/{image_id}/predict/{model_id}", base, layer=layer)


def confusion_url(base: str, truth_id: str, pred_id: str, truth_class: int, pred_class: int,
                  protocol: str = "full") -> str:
    """Pixels where the truth is ``truth_class`` and the prediction ``pred_class`` (a metrics click-through)."""
    return tile_url(f"/datasets/{truth_id}/confusion/{pred_id}", base, truth_class=truth_class,
                    pred_class=pred_class, protocol=protocol)


LIVE_LAYER_NAMES = {"class": "Prediction", "entropy": "Uncertainty (entropy)", "margin": "Uncertainty (margin)",
                    "error": "Errors (GT ≠ prediction)"}


def scene_layers(scene: Scene, cat: Catalog, base: str, preset: str = "rgb", models: list[str] = (),
                 live_layer: str = "class", deep_link: dict | None = None) -> SceneLayers:
    """Image URL plus the class layers to compare, in swipe order.

    With two models the swipe compares model A with model B; with one, the ground truth with the
    model; with none, the ground truth with stored predictions. A metrics click-through shows its
    confusion highlight against the ground truth it was scored on, and nothing over them: the other layers
    go to ``hidden``.
    """
    truth = [("Ground truth", dataset_tile_url(scene.truth.id, base))] if scene.truth else []
    live = [(f"{LIVE_LAYER_NAMES[live_layer]} · {m}", prediction_url(base, scene.image.id, m, live_layer)) for m in models]
    stored = [(f"Stored prediction · {p.title or p.id}", dataset_tile_url(p.id, base)) for p in scene.predictions]
    layers = live + truth if len(models) >= 2 else truth + (live or stored)
    link = deep_link or {}
    truth_id = link.get("truth_id") or (scene.truth.id if scene.truth else None)
    if link.get("confusion") and truth_id in cat and link.get("pred_id") in cat:
        c1, c2 = link["confusion"]
        names = protocol_names(link.get("protocol", "full"))
        highlight = (f"Confusion: truth {names[c1 - 1]} → predicted {names[c2 - 1]}",
                     confusion_url(base, truth_id, link["pred_id"], c1, c2, link.get("protocol", "full")))
        hidden = [layer for layer in layers if layer[0] != "Ground truth"]
        layers = [highlight, ("Ground truth", dataset_tile_url(truth_id, base))]
    else:
        hidden = []
    return SceneLayers(dataset_bounds_wgs84(scene.image), dataset_tile_url(scene.image.id, base, preset=preset), layers,
                       floor_zoom(scene.image, scene.truth, *(scene.predictions if not models else ())), hidden)


# -- page state: deep links and filters (Streamlit's session state is a plain mutable mapping) ------
# Widgets read their state from these keys, so a link can set layers before the widgets are drawn.
LINK_WIDGETS: tuple[tuple[str, str], ...] = (("preset", "explore_preset"), ("opacity", "explore_opacity"),
                                             ("view", "explore_view"), ("models", "explore_models"),
                                             ("live_layer", "explore_live"))


def take_deep_link(state: MutableMapping[str, Any], query: Mapping[str, str]) -> dict:
    """The deep link in force: a new one (from Metrics or the home story, in ``state["explore"]``) or ``?patch=``.

    A link stays active until another patch is chosen (:func:`keep_link_for`); its layer settings are
    written into the widgets' keys so they show on the first run.
    """
    if "explore" in state:
        incoming = dict(state.pop("explore") or {})
        if "model" in incoming and "models" not in incoming:
            incoming["models"] = [incoming["model"]]
        for key, widget in LINK_WIDGETS:
            if key in incoming:
                state[widget] = incoming[key]
        state["explore_link"] = incoming
    elif "patch" in query and "explore_link" not in state:
        state["explore_link"] = {"patch": query["patch"]}
    return state.get("explore_link", {})


def keep_link_for(state: MutableMapping[str, Any], link: dict, scene_id: str) -> dict:
    """The link, or an empty one once the analyst picked another patch than the link's."""
    if link.get("scene") not in (None, scene_id):
        link = state["explore_link"] = {}
    link["scene"] = scene_id
    return link


def model_defaults(state: MutableMapping[str, Any], link: dict, known: list[str]) -> list[str] | None:
    """Default live models: the link's model, else the first the server offers; None when the widget has state.

    Models a link names but the server does not know are dropped from the widget's state.
    """
    if "explore_models" in state:
        state["explore_models"] = [m for m in state["explore_models"] if m in known]
        return None
    return [link["model"]] if link.get("model") in known else known[:1]


def confusion_caption(link: dict) -> str | None:
    """What the confusion highlight of a Metrics click-through shows, in the link's numbering."""
    if not link.get("confusion"):
        return None
    c1, c2 = link["confusion"]
    protocol = link.get("protocol", "full")
    text = (f"Confusion highlight: pixels whose truth is class {c1} and prediction class {c2} "
            f"({protocol} numbering).")
    if protocol == "full":
        text += f" ({BY_VALUE[c1].name} → {BY_VALUE[c2].name})"
    return text
