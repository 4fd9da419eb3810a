"""Scanning a ``[[scan]]`` folder on catalog load: its patch index and zone mosaics, cached by folder stamp.

A catalog that names a FLAIR tree with ``[[scan]]`` would otherwise reopen every header on each
load (the tile server and the UI both load it); the cache turns that into one Parquet read.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from flair_viz.core import config, index, mosaics
from flair_viz.core.errors import FlairVizError, MissingSource


def cached_scan(folder: Path, root: Path, metadata: str | None = None, levels: list[str] = ("zone",)) -> pd.DataFrame:
    """A ``[[scan]]`` entry's index with its zone mosaics, cached by folder stamp under the cache folder.

    Loading a catalog then reads one Parquet file instead of every header; adding or removing patches
    changes the stamp and triggers a rescan. Any problem in the folder is raised, as for a strict scan.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingSource(f"Folder not found: {folder}",
                            "give a folder in FLAIR layout <domain>/<zone>/img/IMG_<id>.tif")
    meta = [root / metadata] if metadata else sorted(folder.glob("*metadata*.json"))
    stamp = index.folder_stamp(folder.resolve(), meta)
    key = hashlib.sha256(f"{folder.resolve()}|{root}|{metadata}|{sorted(levels)}".encode()).hexdigest()[:16]
    cache = config.cache_dir() / "catalog-scans" / key
    cached = cache / f"{stamp}.parquet"
    if cached.exists():
        try:
            return index.read_index(cached)
        except FlairVizError:
            pass  # a damaged cache is rebuilt
    result = index.scan_tree(folder, root, metadata)
    if result.errors:
        raise result.errors[0]
    table = result.rows
    if levels:
        built, errs = mosaics.build_mosaics(table, root, cache / stamp, levels)
        if errs:
            raise errs[0]
        table = pd.concat([table, built], ignore_index=True) if len(built) else table
    index.write_index(table, cached, stamp)
    return table
