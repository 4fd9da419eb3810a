"""Files uploaded on the Change page (a grouping TOML, a region layer), kept by content.

Named by their content hash under the user data folder, so re-uploading the same file reuses it and
nothing is overwritten in place while another session may read it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from flair_viz.change.grouping import DEFAULT_GROUPING_PATH
from flair_viz.core import atomic
from flair_viz.core.config import user_data_dir
from flair_viz.core.errors import InvalidInput


def store_upload(data: bytes, filename: str, kind: str) -> Path:
    """Keep an uploaded grouping or region file under the user data folder, named by its content
    hash so re-uploading the same file reuses it and nothing is overwritten in place."""
    suffix = "".join(Path(filename).suffixes[-1:]).lower()
    if kind == "regions" and suffix not in (".gpkg", ".geojson", ".json"):
        raise InvalidInput(f"{filename}: region files must be GeoPackage (.gpkg) or GeoJSON (.geojson)",
                           "export the polygon layer to one of these formats")
    if kind == "grouping" and suffix != ".toml":
        raise InvalidInput(f"{filename}: a grouping is a .toml file", f"start from {DEFAULT_GROUPING_PATH}")
    path = user_data_dir() / "change" / kind / f"{hashlib.sha256(data).hexdigest()[:16]}{suffix}"
    if not path.exists():
        atomic.write_bytes(path, data)
    return path
