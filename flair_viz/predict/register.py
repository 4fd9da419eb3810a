"""Register a batch prediction in the catalog, so the tile server and the map show it like any other.

The entries are one marked block appended to the catalog file's text rather than a rewrite of the
whole catalog, so hand-written ``[[scan]]`` entries and comments survive; concurrent jobs take turns
through :func:`flair_viz.core.locks.locked`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flair_viz.core import atomic, errors, mosaics
from flair_viz.core.catalog import Catalog
from flair_viz.core.errors import OutsideDataRoot
from flair_viz.core.locks import locked
from flair_viz.core.names import safe_name
from flair_viz.core.scenes import Scene
from flair_viz.core.vrt import write_vrt
from flair_viz.predict.cards import ModelCard

BLOCK_RE = r"# --- BEGIN batch {id} .*?# --- END batch {id} ---\n"


def register_mosaic(catalog_file: str | os.PathLike[str], vrt: Path, card: ModelCard,
                    outputs: Sequence[tuple[Scene, Path]], outside_root: bool = False) -> str:
    """Add (or replace) ``MOSAIC_<model>`` in a catalog file so the tile server and the map can show it.

    Scenes that are FLAIR patches also get an entry ``PRED_<patch>_<model>`` linked to their patch,
    so the Explore page shows them over their image and ``flair-viz evaluate`` pairs them with their
    ground truth, and each zone with two or more of them a zone mosaic (:func:`zone_mosaics`). Outputs outside the catalog's data root are refused unless ``outside_root``.
    """
    import tomli_w

    catalog_file = Path(catalog_file)
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
    with locked(catalog_file):
        text = catalog_file.read_text(encoding="utf-8") if catalog_file.exists() else 'data_root = "."\n'
        root = data_root(catalog_file)
        for e in entries:
            path = e["path"].resolve()
            e["path"] = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
            if outside_root:
                e["outside_root"] = True
        block = (f"# --- BEGIN batch {ds_id} (written by flair-viz predict; do not edit by hand) ---\n"
                 + tomli_w.dumps({"dataset": entries}) + f"# --- END batch {ds_id} ---\n")
        pattern = re.compile(BLOCK_RE.format(id=re.escape(ds_id)), re.DOTALL)
        text = pattern.sub(lambda _m: block, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + block
        where = f"Cannot register the mosaic in {catalog_file.name}"
        with atomic.atomic_path(catalog_file) as tmp, errors.context(where):
            tmp.write_text(text, encoding="utf-8")
            Catalog.load(tmp)  # the new text must load as a catalog before it replaces the file
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


def data_root(catalog_file: str | os.PathLike[str]) -> Path:
    """The folder the catalog's paths are relative to (loading the catalog, so a broken one fails here)."""
    catalog_file = Path(catalog_file)
    return Catalog.load(catalog_file).root if catalog_file.exists() else catalog_file.parent.resolve()


def check_under_root(catalog_file: str | os.PathLike[str], vrt: Path, ds_id: str) -> None:
    """Refuse a mosaic the catalog could not reference, saying exactly how the user can register it anyway.

    Batch prediction writes its outputs first and turns this refusal into a note, so the fix names both
    ways out: a rerun with ``--outside-root`` (finished scenes are skipped) or the entry to add by hand.
    """
    import tomli_w

    catalog_file, vrt = Path(catalog_file), Path(vrt).resolve()
    root = data_root(catalog_file)
    if vrt.parent.is_relative_to(root):
        return
    entry = tomli_w.dumps({"dataset": [{"id": ds_id, "path": str(vrt), "role": "prediction", "outside_root": True}]})
    raise OutsideDataRoot(f"{vrt} is outside the data root {root} of the catalog {catalog_file}, so {ds_id} "
                          "was not registered there",
                          f"rerun the same command with --outside-root (finished scenes are skipped), "
                          f"or add this entry to {catalog_file}:\n{entry.rstrip()}")
