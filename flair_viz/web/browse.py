"""Which images the Explore list offers, at any catalog size.

A FLAIR release holds tens of thousands of patches. Building a :class:`~flair_viz.web.explore.Scene`
for each (truth and prediction lookups, one ``Dataset`` object per row) costs seconds, and a select box
of 100,000 entries is useless and slow to send. So the filters are answered from the catalog's
index tables, scenes are built only for the images that match, and past ``limit`` matches the list
keeps the zone mosaics and stand-alone scenes (which pan across the same pixels) instead of single patches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from flair_viz.core.catalog import Catalog
from flair_viz.web.explore import Scene, list_scenes

SCENE_LIST_LIMIT = 2000
COLUMNS = ("id", "domain", "zone", "year", "patch", "single")


@dataclass(frozen=True)
class SceneList:
    scenes: list[Scene]
    total: int  # images matching the filters (or every image when nothing matches)
    limited: bool  # single patches were left out of ``scenes``: choose a domain or zone to list them


def image_table(cat: Catalog) -> pd.DataFrame:
    """One row per aerial image: id, domain, zone, year, patch, and whether it is a single patch."""
    t = cat.table()
    img = t[t["role"] == "image"]
    patch = img["patch"].fillna("").astype(str)
    is_vrt = img["path"].astype(str).str.lower().str.endswith(".vrt")
    return pd.DataFrame({
        "id": img["id"], "domain": img["domain"].fillna(""), "zone": img["zone"].fillna(""),
        "year": img["vintage"].fillna("").astype(str).str[:4], "patch": patch,
        "single": ((patch != "") & (img["mosaic"] == "") & ~is_vrt).astype(bool)}, columns=list(COLUMNS)
    ).reset_index(drop=True)


def options(table: pd.DataFrame, domains: Sequence[str] = ()) -> tuple[list[str], list[str], list[str]]:
    """(domains, zones, years) offered by the filters; zones narrow to the chosen domains."""
    zones = table[table["domain"].isin(domains)] if domains else table
    return (sorted(set(table["domain"]) - {""}), sorted(set(zones["zone"]) - {""}),
            sorted(set(table["year"]) - {""}))


def browse(cat: Catalog, domains: Sequence[str] = (), zones: Sequence[str] = (), years: Sequence[str] = (),
           keep: str | None = None, limit: int = SCENE_LIST_LIMIT, table: pd.DataFrame | None = None) -> SceneList:
    """Scenes for the images matching every non-empty filter (all when nothing matches, as before).

    ``keep`` (a patch number or image ID, e.g. from a deep link) is always listed, limit or not.
    """
    t = image_table(cat) if table is None else table
    sel = pd.Series(True, index=t.index)
    for col, wanted in (("domain", domains), ("zone", zones), ("year", years)):
        if wanted:
            sel &= t[col].isin(list(wanted))
    matched = t[sel] if sel.any() else t
    shown = matched if len(matched) <= limit else matched[~matched["single"]]
    if shown.empty:  # patches only (scanned with --mosaics none): the first ones, so the page never empties
        shown = matched.head(limit)
    if keep:
        shown = pd.concat([shown, t[(t["id"] == keep) | (t["patch"] == keep)]]).drop_duplicates("id")
    scenes = list_scenes(cat, images=[cat.get(i) for i in shown["id"]])
    return SceneList(scenes, total=len(matched), limited=len(shown) < len(matched))
