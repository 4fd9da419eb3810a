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

from flair_viz.core import atomic, errors
from flair_viz.core.catalog import Catalog
from flair_viz.core.errors import OutsideDataRoot
from flair_viz.core.locks import locked
from flair_viz.core.names import safe_name
from flair_viz.core.scenes import Scene
from flair_viz.predict.cards import ModelCard

BLOCK_RE = r"# --- BEGIN batch {id} .*?# --- END batch {id} ---\n"


def register_mosaic(catalog_file: str | os.PathLike[str], vrt: Path, card: ModelCard,
                    outputs: Sequence[tuple[Scene, Path]], outside_root: bool = False) -> str:
    """Add (or replace) ``MOSAIC_<model>`` in a catalog file so the tile server and the map can show it.

    Scenes that are FLAIR patches also get an entry ``PRED_<patch>_<model>`` linked to their patch,
    so the Explore page shows them over their image and ``flair-viz evaluate`` pairs them with their
    ground truth. Outputs outside the catalog's data root are refused unless ``outside_root``.
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
    if not outside_root:
        check_under_root(catalog_file, Path(vrt).parent)
    with locked(catalog_file):
        text = catalog_file.read_text(encoding="utf-8") if catalog_file.exists() else 'data_root = "."\n'
        root = Catalog.load(catalog_file).root if catalog_file.exists() else catalog_file.parent.resolve()
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


def check_under_root(catalog_file: str | os.PathLike[str], out_dir: Path) -> None:
    """Refuse an output folder the catalog could not reference, before hours of prediction, not after."""
    catalog_file = Path(catalog_file)
    root = Catalog.load(catalog_file).root if catalog_file.exists() else catalog_file.parent.resolve()
    if not out_dir.resolve().is_relative_to(root):
        raise OutsideDataRoot(f"--out {out_dir} is outside the data root {root} of the catalog {catalog_file.name}, so "
                              "the mosaic could not be registered there",
                              "write --out under the data root, pass --outside-root to register it anyway, "
                              "or --no-register")
