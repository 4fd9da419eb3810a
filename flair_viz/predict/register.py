"""Register a batch prediction in the catalog, so the tile server and the map show it like any other.

The entries are ``[[dataset]]`` tables added or replaced by ID through the one catalog writer
(:mod:`flair_viz.core.catalog_file`), so hand-written entries and comments survive and concurrent
jobs take turns under its lock.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flair_viz.core import catalog_file as toml_file
from flair_viz.core import mosaics
from flair_viz.core.catalog import Catalog
from flair_viz.core.errors import OutsideDataRoot
from flair_viz.core.names import safe_name
from flair_viz.core.scenes import Scene
from flair_viz.core.vrt import write_vrt
from flair_viz.predict.cards import ModelCard


def register_mosaic(catalog_file: str | os.PathLike[str], vrt: Path, card: ModelCard,
                    outputs: Sequence[tuple[Scene, Path]], outside_root: bool = False) -> str:
    """Add (or replace) ``MOSAIC_<model>`` in a catalog file so the tile server and the map can show it.

    Scenes that are FLAIR patches also get an entry ``PRED_<patch>_<model>`` linked to their patch,
    so the Explore page shows them over their image and ``flair-viz evaluate`` pairs them with their
    ground truth, and each zone with two or more of them a zone mosaic (:func:`zone_mosaics`). Outputs outside the catalog's data root are refused unless ``outside_root``.
    """
    catalog_path = Path(catalog_file)
    ds_id = f"MOSAIC_{safe_name(card.id)}"
    made_by = {"model": card.id, "made_by": "flair-viz predict"}
    entries: list[dict[str, Any]] = [{"id": ds_id, "path": Path(vrt), "role": "prediction",
                                      "title": f"Prediction mosaic {card.id} ({len(outputs)} scene(s))",
                                      "extra": made_by | {"scenes": str(len(outputs))}}]
    for scene, out in outputs:
        if scene.patch:
            meta = {k: v for k, v in (("patch", scene.patch), ("domain", scene.domain), ("zone", scene.zone),
                                      ("vintage", scene.vintage)) if v}
            entries.append({"id": f"PRED_{safe_name(scene.patch)}_{safe_name(card.id)}", "path": Path(out),
                            "role": "prediction", **meta, "title": f"Prediction {card.id} {scene.patch}",
                            "extra": dict(made_by)})
    entries += zone_mosaics(vrt, card, outputs, made_by)
    if not outside_root:
        check_under_root(catalog_file, vrt, ds_id)
    for e in entries:
        e["path"] = Path(e["path"])  # the writer stores it relative to the data root when it lies under it
        if outside_root:
            e["outside_root"] = True
    toml_file.upsert(catalog_path, "dataset", entries, key="id", drop=lambda old: _same_model(old, card.id))
    return ds_id


def zone_mosaics(vrt: Path, card: ModelCard, outputs: Sequence[tuple[Scene, Path]],
                 made_by: dict[str, str]) -> list[dict[str, Any]]:
    """One prediction VRT per FLAIR zone with two or more predicted patches, beside the batch mosaic.

    Each carries the zone's mosaic key (``<domain>/<zone>``, as the scan's zone mosaics do), so Explore
    shows it over the zone's image mosaic; the VRTs share the batch mosaic's CRS, checked when it was built.
    """
    zones: dict[tuple[str, str], list[Path]] = {}
    for scene, out in outputs:
        if scene.patch and scene.domain and scene.zone:
            zones.setdefault((scene.domain, scene.zone), []).append(Path(out))
    entries = []
    for (domain, zone), paths in sorted(zones.items()):
        if len(paths) < 2:
            continue
        zone_id = f"{mosaics.mosaic_id((domain, zone), 'image')}_PRED_{safe_name(card.id)}"
        path = write_vrt(paths, Path(vrt).parent / f"{zone_id}.vrt")
        entries.append({"id": zone_id, "path": path, "role": "prediction", "domain": domain, "zone": zone,
                        "title": f"Prediction {card.id} zone {domain}/{zone} ({len(paths)} patches)",
                        "extra": made_by | {"mosaic": f"{domain}/{zone}"}})
    return entries


def _same_model(entry: dict[str, Any], model: str) -> bool:
    """An entry an earlier ``predict`` run of this model registered: a rerun replaces that whole set, so
    a scene left out this time does not keep a stale prediction in the catalog."""
    extra = entry.get("extra") or {}
    return extra.get("made_by") == "flair-viz predict" and extra.get("model") == model


def data_root(catalog_file: str | os.PathLike[str]) -> Path:
    """The folder the catalog's paths are relative to (loading the catalog, so a broken one fails here)."""
    catalog_file = Path(catalog_file)
    return Catalog.load(catalog_file).root if catalog_file.exists() else catalog_file.parent.resolve()


def check_under_root(catalog_file: str | os.PathLike[str], vrt: Path, ds_id: str) -> None:
    """Refuse a mosaic the catalog could not reference, saying exactly how the user can register it anyway.

    Batch prediction writes its outputs first and turns this refusal into a note, so the fix names both
    ways out: a rerun with ``--outside-root`` (finished scenes are skipped) or the entry to add by hand.
    """
    catalog_file, vrt = Path(catalog_file), Path(vrt).resolve()
    root = data_root(catalog_file)
    if vrt.parent.is_relative_to(root):
        return
    entry = toml_file.entry_text("dataset", {"id": ds_id, "path": str(vrt), "role": "prediction", "outside_root": True})
    raise OutsideDataRoot(f"{vrt} is outside the data root {root} of the catalog {catalog_file}, so {ds_id} "
                          "was not registered there",
                          f"rerun the same command with --outside-root (finished scenes are skipped), "
                          f"or add this entry to {catalog_file}:\n{entry}")
