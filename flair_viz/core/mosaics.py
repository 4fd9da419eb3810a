"""Zone and domain mosaics: one VRT of the images and one of the masks per FLAIR zone (or domain).

The patches of a FLAIR zone are adjacent, so an analyst pans across the zone instead of opening
512 px squares one by one. A mosaic is a catalog dataset like any other (kind ``mosaic``), so the
tile server serves it and live prediction runs on it with context read across patch borders.
Mosaics are rows of the patch index (``mosaic`` column = ``<domain>/<zone>`` or ``<domain>``),
built from the headers the scan already read.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import rasterio
from rasterio.crs import CRS

from flair_viz.core import raster, vrt
from flair_viz.core.errors import AlignmentError, FlairVizError, InvalidInput, context
from flair_viz.core.index import COLUMNS, _rel, mosaic_groups
from flair_viz.core.names import safe_name

LEVELS = ("zone", "domain")
ROLE_SUFFIX = {"image": "", "truth": "_MSK"}


def mosaic_id(key: tuple[str, ...], role: str) -> str:
    """``ZONE_<domain>_<zone>`` / ``DOMAIN_<domain>`` for images, with ``_MSK`` for masks."""
    level = "ZONE" if len(key) == 2 else "DOMAIN"
    return f"{level}_{'_'.join(safe_name(k) for k in key)}{ROLE_SUFFIX[role]}"


def _info(row, root: Path) -> raster.RasterInfo:
    """The header a scan already read, rebuilt from the index row (no file opened)."""
    path = Path(row.path) if os.path.isabs(row.path) else root / row.path
    if row.crs != "EPSG:2154":  # index bounds are reprojected to Lambert-93: read the native grid
        return raster.describe(path)
    res_x = round((row.right - row.left) / row.width, 10)  # bounds/size carries float noise (1e-14 m)
    res_y = round((row.top - row.bottom) / row.height, 10)
    crs = CRS.from_user_input(row.crs) if row.crs else None
    return raster.RasterInfo(path=path, count=int(row.count), width=int(row.width), height=int(row.height),
                             dtype=row.dtype or "uint8", crs=crs, transform=rasterio.Affine(res_x, 0, row.left, 0, -res_y, row.top),
                             bounds=(row.left, row.bottom, row.right, row.top), nodata=None)


def check_levels(levels: Sequence[str]) -> None:
    unknown = set(levels) - set(LEVELS)
    if unknown:
        raise InvalidInput(f"Unknown mosaic level(s) {sorted(unknown)}", "use zone, domain, zone,domain or none")


def build_mosaics(table: pd.DataFrame, root: Path, out_dir: Path, levels: Sequence[str] = ("zone",),
                  min_patches: int = 2) -> tuple[pd.DataFrame, list[FlairVizError]]:
    """VRTs of every zone (and/or domain) with at least ``min_patches`` patches, as index rows.

    Bounds in the index are in EPSG:2154, and so are FLAIR patches. A patch whose CRS, pixel size or
    band layout differs from most of its group's is left out of the mosaic and named; a group with no
    such majority (half in one CRS, half in another) is refused with the reason, the others are built.
    """
    check_levels(levels)
    rows, errors = [], []
    for level in levels:
        by = ("domain", "zone") if level == "zone" else ("domain",)
        for key, group in mosaic_groups(table, by).items():
            if group["patch"].nunique() < min_patches:
                continue
            for role in ("image", "truth"):
                members = group[group["role"] == role]
                if members.empty:
                    continue
                ds_id = mosaic_id(key, role)
                path = out_dir / f"{ds_id}.vrt"
                try:
                    with context(f"Mosaic {ds_id} of {len(members)} patches (not built)"):
                        members, infos, odd = _usable(members, root)
                        errors += [e.with_context(f"Mosaic {ds_id}: patch {pid} is left out of it") for pid, e in odd]
                        if len(members) < min_patches:
                            continue
                        vrt.write_mosaic(infos, path, palette=role == "truth")
                except FlairVizError as exc:
                    errors.append(exc)
                    continue
                first = members.iloc[0]
                label = "/".join(key)
                rel = _rel(path, root)
                rows.append({"id": ds_id, "role": role, "path": rel, "domain": key[0],
                             "zone": key[1] if len(key) == 2 else None,
                             "vintage": first["vintage"] if members["vintage"].nunique() == 1 else None,
                             "patch": None, "bands": first["bands"], "count": first["count"], "dtype": first["dtype"],
                             "width": None, "height": None, "left": members["left"].min(),
                             "bottom": members["bottom"].min(), "right": members["right"].max(),
                             "top": members["top"].max(), "crs": first["crs"],
                             "title": f"{'Zone' if len(key) == 2 else 'Domain'} {label} "
                                      f"{'images' if role == 'image' else 'ground truth'} ({len(members)} patches)",
                             "camera": None, "mosaic": label,
                             "outside_root": os.path.isabs(rel)})
    return pd.DataFrame(rows, columns=list(COLUMNS)), errors


def _layout(info: raster.RasterInfo) -> tuple:
    """What one VRT needs all its sources to share: CRS, north-up pixel size, band count and type."""
    t = info.transform
    return (info.crs.to_wkt() if info.crs else "", round(t.a, 9), round(t.e, 9), t.b == 0 and t.d == 0,
            info.count, str(info.dtype))


def _usable(members: pd.DataFrame, root: Path) -> tuple[pd.DataFrame, list[raster.RasterInfo],
                                                        list[tuple[str, FlairVizError]]]:
    """The patches a mosaic can hold, their headers, and each other patch with the reason it is left out.

    One odd patch (4 bands among 5-band images, another pixel size or CRS, an unreadable header) must
    not cost its whole zone the mosaic: when most patches share one layout, the others are left out
    and named. Without a majority nothing says which patches are the odd ones, so the group is refused.
    """
    infos: dict[int, raster.RasterInfo] = {}
    odd: list[tuple[str, FlairVizError]] = []
    for k, r in enumerate(members.itertuples()):
        try:
            infos[k] = _info(r, root)
        except FlairVizError as exc:
            odd.append((r.patch, exc))
    if not infos:
        return members.iloc[:0], [], odd
    layouts = {k: _layout(i) for k, i in infos.items()}
    counts = pd.Series(list(layouts.values()), dtype=object).value_counts()
    if counts.iloc[0] * 2 <= len(members):
        _check_crs(members)  # no majority: refused, naming two CRSs when that is the split
        vrt.check_mosaic_grids(list(infos.values()))
    keep = [k for k in infos if layouts[k] == counts.index[0]]
    for k in sorted(set(infos) - set(keep)):
        try:
            vrt.check_mosaic_grids([infos[keep[0]], infos[k]])
            keep.append(k)  # a layout that differs only within the grid tolerance
        except FlairVizError as exc:
            odd.append((members.iloc[k]["patch"], exc))
    keep.sort()
    return members.iloc[keep], [infos[k] for k in keep], odd


def _check_crs(members: pd.DataFrame) -> None:
    """Refuse a mosaic over several CRSs, naming one patch of each (a VRT has one CRS)."""
    crss = members.drop_duplicates("crs")
    if len(crss) > 1:
        a, b = crss.iloc[0], crss.iloc[1]
        raise AlignmentError(f"its patches are in {len(crss)} CRSs: {a['id']} is in {a['crs'][:40]} but {b['id']} "
                             f"is in {b['crs'][:40]}; one mosaic needs one CRS",
                             "reproject the patches to EPSG:2154 (gdalwarp -t_srs EPSG:2154), or keep them in "
                             "separate zones")
