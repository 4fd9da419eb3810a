"""Scanning a ``[[scan]]`` folder on catalog load: its patch index and zone mosaics, cached by folder stamp.

A catalog that names a FLAIR tree with ``[[scan]]`` would otherwise reopen every header on each
load (the tile server and the UI both load it); the cache turns that into one Parquet read.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd

from flair_viz.core import atomic, config, index, mosaics
from flair_viz.core.errors import FlairVizError, MissingSource, Unreadable

FORMAT = 3  # bumped when what a scan writes changes (2: image mosaics mask the gaps between patches; 3: masks
# without an image are named, and an odd patch is left out of its zone mosaic instead of refusing it)


def cached_scan(folder: Path, root: Path, metadata: str | None = None,
                levels: list[str] = ("zone",)) -> tuple[pd.DataFrame, list[str]]:
    """A ``[[scan]]`` entry's index with its zone mosaics, cached by folder stamp under the cache folder, and
    the problems met (one message per broken file, duplicate ID, misaligned mask or refused mosaic).

    Loading a catalog then reads one Parquet file instead of every header; adding or removing patches
    changes the stamp and triggers a rescan. Why not stop at the first broken file: one bad TIFF among
    thousands of patches would take the whole catalog, and every page, down; it is left out and named
    instead, as ``catalog scan`` does. The problems are cached beside the index, so every load names them.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingSource(f"Folder not found: {folder}",
                            "give a folder in FLAIR layout <domain>/<zone>/img/IMG_<id>.tif")
    meta = [root / metadata] if metadata else sorted(folder.glob("*metadata*.json"))
    stamp = index.folder_stamp(folder.resolve(), meta)
    key_text = f"{FORMAT}|{folder.resolve()}|{root}|{metadata}|{sorted(levels)}"
    key = hashlib.sha256(key_text.encode("utf-8", "surrogateescape")).hexdigest()[:16]  # any folder name
    cache = config.cache_dir() / "catalog-scans" / key
    cached, noted = cache / f"{stamp}.parquet", cache / f"{stamp}.problems.json"
    if cached.exists():
        try:
            return index.read_index(cached), _read_problems(noted)
        except FlairVizError:
            pass  # a damaged cache is rebuilt
    result = index.scan_tree(folder, root, metadata)
    problems = result.problems
    table = result.rows
    if levels:
        built, errs = mosaics.build_mosaics(table, root, cache / stamp, levels)
        problems += [e.message for e in errs]
        table = pd.concat([table, built], ignore_index=True) if len(built) else table
    atomic.write_text(noted, json.dumps(problems, ensure_ascii=False))  # before the index: it marks the cache done
    index.write_index(table, cached, stamp)
    return table, problems


def _read_problems(path: Path) -> list[str]:
    try:
        return list(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        raise Unreadable(f"The scan cache {path.name} is missing or damaged", "nothing to do: it is rebuilt") from None
