"""What the Explore page shows, decided without Streamlit: scenes, presets and layer URLs.

A *scene* is one aerial image plus whatever the catalog knows for the same patch (ground truth,
stored predictions). Keeping this here lets tests check the layer logic without a browser.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flair_viz.core.catalog import Catalog, Dataset
from flair_viz.core.classes import protocol_names
from flair_viz.core.raster import PRESET_BANDS, describe
from flair_viz.web.maps import Bounds, dataset_bounds_wgs84, dataset_tile_url
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


@dataclass
class SceneLayers:
    bounds: Bounds
    image_url: str
    class_layers: list[tuple[str, str]] = field(default_factory=list)  # (name, url template)


def _overlaps(a: Dataset, b: Dataset) -> bool:
    """Do two datasets' footprints intersect (compared in ``a``'s CRS)?"""
    from rasterio.warp import transform_bounds

    ia, ib = describe(a.path), describe(b.path)
    bb = ib.bounds if ia.crs == ib.crs else transform_bounds(ib.crs, ia.crs, *ib.bounds)
    return ia.bounds[0] < bb[2] and bb[0] < ia.bounds[2] and ia.bounds[1] < bb[3] and bb[1] < ia.bounds[3]


def list_scenes(cat: Catalog) -> list[Scene]:
    """Every aerial image with its ground truth and stored predictions.

    Predictions of a patch match by patch ID; patch-less ones (a batch VRT mosaic over many scenes)
    match every image whose footprint they cover, unless the image already has a per-patch prediction of
    the same model, so batch results show up on the map once.
    """
    scenes = []
    mosaics = [d for d in cat.by_role("prediction") if not d.patch]
    for img in cat.by_role("image"):
        truth = cat.for_patch(img.patch, "truth") if img.patch else None
        preds = [d for d in cat.by_role("prediction") if img.patch and d.patch == img.patch]
        models = {p.extra.get("model") for p in preds} - {None}
        preds += [m for m in mosaics if m.extra.get("model") not in models and _overlaps(img, m)]
        scenes.append(Scene(img, truth, tuple(preds)))
    return sorted(scenes, key=lambda s: (s.domain or "~", s.zone or "", s.image.id))


def find_scene(scenes: list[Scene], patch_or_id: str | None) -> Scene | None:
    if not patch_or_id:
        return None
    return next((s for s in scenes if patch_or_id in (s.patch, s.image.id)), None)


def available_presets(image: Dataset) -> list[str]:
    """Band presets this image can show (an RGB-only file has no IRC or elevation)."""
    return [p for p, bands in PRESET_BANDS.items() if all(b in image.bands for b in bands)] or ["rgb"]


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
    model; with none, the ground truth with stored predictions. A metrics click-through puts its
    confusion highlight first, so it is what the analyst sees.
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
        layers.insert(0, (f"Confusion: truth {names[c1 - 1]} → predicted {names[c2 - 1]}",
                          confusion_url(base, truth_id, link["pred_id"], c1, c2, link.get("protocol", "full"))))
    return SceneLayers(dataset_bounds_wgs84(scene.image), dataset_tile_url(scene.image.id, base, preset=preset), layers)
