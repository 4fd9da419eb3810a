"""One registered raster: the record every feature receives from the catalog (:mod:`flair_viz.core.catalog`).

Kept apart from the collection so that modules which only read a dataset's fields (tile readers, maps)
need not know how the catalog stores, loads or edits its entries.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from flair_viz.core.errors import InvalidCatalog

ROLES = ("image", "truth", "prediction", "change")
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class Dataset:
    """One registered raster. ``patch`` links an image with its ground truth and predictions."""

    id: str
    path: Path
    role: str
    vintage: str | None = None  # ISO date of acquisition
    domain: str | None = None  # e.g. D004_2021
    zone: str | None = None  # e.g. Z6_NU
    patch: str | None = None  # FLAIR patch number, e.g. 000473
    nomenclature: str = "flair1"  # for class rasters
    bands: tuple[str, ...] = ()  # for images, in file order
    title: str = ""
    simulated: bool = False
    outside_root: bool = False
    extra: dict[str, str] = field(default_factory=dict)
    series: str | None = None  # name of a series: vintages of one area at several dates (the change trend)

    @property
    def is_class_raster(self) -> bool:
        return self.role in ("truth", "prediction", "change")

    @property
    def label(self) -> str:
        parts = [self.title or self.id]
        if self.domain:
            parts.append(self.domain)
        if self.zone:
            parts.append(self.zone)
        if self.vintage:
            parts.append(self.vintage)
        if self.simulated:
            parts.append("SIMULATED")
        return " · ".join(parts)

    def to_toml(self, root: Path) -> dict:
        d = {k: v for k, v in asdict(self).items() if v not in (None, "", (), {}, False) or k in ("id", "role")}
        try:
            d["path"] = str(self.path.relative_to(root))
        except ValueError:
            d["path"] = str(self.path)
        if "bands" in d:
            d["bands"] = list(d["bands"])
        if self.nomenclature == "flair1":
            d.pop("nomenclature", None)
        return d


def check_id(ds_id: str) -> None:
    if not ID_RE.match(ds_id):
        raise InvalidCatalog(f"Invalid dataset ID {ds_id!r}",
                           "use letters, digits, '_', '-' or '.', starting with a letter or digit (max 128)")
