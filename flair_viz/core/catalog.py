"""The catalog: every raster FLAIR Viz shows or computes on, registered under a stable ID.

The tile server opens rasters *only* through this catalog, by ID, so a request can never name a
file. Paths must lie under the catalog's data root unless an entry says ``outside_root = true``
(added explicitly by a person, never by a request).
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import tomli_w

from flair_viz.core import atomic, config, raster
from flair_viz.core.errors import (
    FlairVizError,
    InvalidCatalog,
    InvalidInput,
    MissingSource,
    OutsideDataRoot,
    UnknownDataset,
    context,
)
from flair_viz.core.names import safe_name

ROLES = ("image", "truth", "prediction", "change")
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
IMG_RE = re.compile(r"^IMG_(?P<id>.+?)\.tiff?$", re.IGNORECASE)  # any name: real folders hold "IMG_ölé 1.tif"


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


def _check_id(ds_id: str) -> None:
    if not ID_RE.match(ds_id):
        raise InvalidCatalog(f"Invalid dataset ID {ds_id!r}",
                           "use letters, digits, '_', '-' or '.', starting with a letter or digit (max 128)")


class Catalog:
    """An ordered set of datasets under one data root, loaded from and saved to a TOML file."""

    def __init__(self, root: Path, datasets: list[Dataset] | None = None, attribution: str = "",
                 source: Path | None = None) -> None:
        self.root = Path(root).resolve()
        self.attribution = attribution
        self.source = source
        self._by_id: dict[str, Dataset] = {}
        for ds in datasets or []:
            self.add(ds)

    # -- access -----------------------------------------------------------------------------
    def __iter__(self):
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, ds_id: str) -> bool:
        return ds_id in self._by_id

    def get(self, ds_id: str) -> Dataset:
        """The dataset with this ID, or :class:`UnknownDataset` saying how to list the known ones."""
        try:
            return self._by_id[ds_id]
        except KeyError:
            raise UnknownDataset(f"Unknown dataset ID {ds_id!r}",
                               "run `flair-viz catalog list` to see registered IDs, or register it with "
                               "`flair-viz catalog scan DIR`") from None

    def by_role(self, role: str) -> list[Dataset]:
        return [d for d in self if d.role == role]

    def for_patch(self, patch: str, role: str) -> Dataset | None:
        """The first dataset of ``role`` for one patch (e.g. the image of a mask); for a ground truth use :meth:`truth_of`."""
        return next((d for d in self if d.patch == patch and d.role == role), None)

    def truth_of(self, ds: Dataset) -> Dataset | None:
        """The ground truth of a patch's image or prediction: the one every score and error layer uses.

        A patch can carry simulated later vintages (the change demo), so a real mask of the same
        vintage comes first, then any real mask, then simulated ones; catalog order breaks ties.
        """
        if not ds.patch:
            return None
        truths = [d for d in self.by_role("truth") if d.patch == ds.patch]
        truths.sort(key=lambda d: (d.simulated, bool(ds.vintage) and d.vintage != ds.vintage))
        return truths[0] if truths else None

    # -- mutation ---------------------------------------------------------------------------
    def add(self, ds: Dataset, replace_existing: bool = False) -> Dataset:
        """Register a dataset; its path must be inside the data root unless marked ``outside_root``."""
        _check_id(ds.id)
        if ds.role not in ROLES:
            raise InvalidCatalog(f"Dataset {ds.id}: unknown role {ds.role!r}", f"use one of {', '.join(ROLES)}")
        path = Path(ds.path)
        if not path.is_absolute():
            path = self.root / path
        path = path.resolve()
        if not ds.outside_root and not path.is_relative_to(self.root):
            raise OutsideDataRoot(
                f"Dataset {ds.id}: {path} is outside the catalog's data root {self.root}",
                "move the file under the data root, or add it explicitly with outside_root = true",
            )
        if ds.id in self._by_id and not replace_existing and self._by_id[ds.id].path != path:
            raise InvalidCatalog(f"Dataset ID {ds.id!r} is already registered for {self._by_id[ds.id].path}",
                               "choose another ID, or remove the old entry first")
        ds = replace(ds, path=path, bands=tuple(ds.bands))
        self._by_id[ds.id] = ds
        return ds

    def remove(self, ds_id: str) -> None:
        self.get(ds_id)
        del self._by_id[ds_id]

    # -- validation -------------------------------------------------------------------------
    def validate(self, ds: Dataset, scan_values: bool = False) -> raster.RasterInfo:
        """Check one dataset against its file; errors name the dataset and the file."""
        with context(f"Dataset {ds.id}"):
            if ds.role == "image":
                return raster.check_image(ds.path, ds.bands or None)
            info = raster.check_mask(ds.path, ds.nomenclature, scan_values=scan_values)
            partner = self.for_patch(ds.patch, "image") if ds.patch and ds.role == "truth" else None
            if partner is not None:
                raster.check_same_grid(raster.describe(partner.path), info)
            return info

    def validate_all(self, scan_values: bool = False) -> list[str]:
        """Validate every dataset; returns one message per problem instead of stopping at the first."""
        problems = []
        for ds in self:
            try:
                self.validate(ds, scan_values=scan_values)
            except FlairVizError as exc:
                problems.append(exc.message)
        return problems

    # -- persistence ------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Catalog:
        """Read a catalog TOML; ``[[scan]]`` entries are expanded by scanning FLAIR-layout folders."""
        path = Path(path)
        if not path.exists():
            raise MissingSource(f"Catalog file not found: {path}",
                               "create one with `flair-viz catalog scan DIR --catalog FILE`")
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise InvalidCatalog(f"Catalog {path.name} is not valid TOML: {exc}",
                                 f"fix the syntax at that line of {path}") from None
        root = (path.parent / doc.get("data_root", ".")).resolve()
        cat = cls(root, attribution=doc.get("attribution", ""), source=path)
        for scan in doc.get("scan", []):
            for ds in scan_flair_folder(root / scan["path"], metadata=scan.get("metadata"), root=root):
                cat.add(ds)
        for entry in doc.get("dataset", []):
            try:
                entry = dict(entry)
                entry["bands"] = tuple(entry.get("bands", ()))
                cat.add(Dataset(**entry), replace_existing=True)
            except TypeError as exc:
                raise InvalidCatalog(f"Catalog {path.name}: bad dataset entry {entry.get('id', '?')}: {exc}",
                                   "see docs/architecture.md for the dataset fields") from None
        return cat

    def save(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write the catalog (all datasets listed explicitly) atomically."""
        path = Path(path or self.source)
        rel_root = os.path.relpath(self.root, path.parent.resolve())
        doc = {"data_root": rel_root, "attribution": self.attribution,
               "dataset": [d.to_toml(self.root) for d in self]}
        atomic.write_text(path, tomli_w.dumps(doc))
        self.source = path
        return path


def load_metadata(path: Path | None) -> dict[str, dict]:
    """Read a FLAIR metadata JSON keyed by ``IMG_<id>``; a broken file is a clear error."""
    if path is None:
        return {}
    if not path.exists():
        raise MissingSource(f"Metadata file not found: {path}",
                           "give the FLAIR metadata JSON path, or omit it (domain/zone come from folders)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidCatalog(f"Metadata {path.name} is not valid JSON: {exc}",
                           "fix or remove the metadata file") from None
    if not isinstance(meta, dict):
        raise InvalidCatalog(f"Metadata {path.name} must be an object keyed by patch (IMG_<id>)",
                           "use the FLAIR metadata format: {\"IMG_000473\": {\"domain\": ..., \"date\": ...}}")
    return meta


def scan_flair_folder(folder: str | os.PathLike[str], metadata: str | os.PathLike[str] | None = None,
                      root: Path | None = None) -> list[Dataset]:
    """Find ``<domain>/<zone>/img/IMG_<id>.tif`` and their ``msk/MSK_<id>.tif`` under ``folder``.

    Domain and zone come from the folder names, and date/camera from the metadata JSON when given
    (or when a ``*metadata*.json`` sits in ``folder``).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingSource(f"Folder not found: {folder}", "give a folder in FLAIR layout <domain>/<zone>/img/IMG_<id>.tif")
    meta_path = Path(metadata) if metadata else next(iter(sorted(folder.glob("*metadata*.json"))), None)
    if metadata and not Path(metadata).is_absolute():
        meta_path = (root or folder) / metadata
    meta = load_metadata(meta_path)
    found: list[Dataset] = []
    seen: dict[str, Path] = {}
    for img in sorted(folder.glob("**/img/IMG_*.tif*")):
        m = IMG_RE.match(img.name)
        if not m:
            continue
        name = m.group("id")
        pid = safe_name(name)
        if pid in seen:
            raise InvalidInput(f"{seen[pid]} and {img} would both get the dataset ID IMG_{pid}",
                               "rename one of them (IDs keep the ASCII letters, digits, '_', '.' and '-' of the file name)")
        seen[pid] = img
        zone_dir = img.parent.parent
        rel = zone_dir.relative_to(folder).parts
        domain = rel[-2] if len(rel) >= 2 else None
        zone = rel[-1] if len(rel) >= 1 else None
        md = meta.get(f"IMG_{name}", {}) if isinstance(meta.get(f"IMG_{name}", {}), dict) else {}
        domain, zone = md.get("domain", domain), md.get("zone", zone)
        vintage = md.get("date") or (f"{domain.split('_')[-1]}" if domain and "_" in domain else None)
        info = raster.check_image(img)
        common = dict(domain=domain, zone=zone, patch=pid, vintage=vintage)
        found.append(Dataset(id=f"IMG_{pid}", path=img, role="image", bands=raster.band_names_for(info.count),
                             title=f"Aerial {name}", extra={"camera": md["camera"]} if md.get("camera") else {},
                             **common))
        msk = zone_dir / "msk" / f"MSK_{name}{img.suffix}"
        if msk.exists():
            minfo = raster.check_mask(msk, scan_values=False)
            with context(f"Patch {pid}"):
                raster.check_same_grid(info, minfo)
            found.append(Dataset(id=f"MSK_{pid}", path=msk, role="truth", title=f"Ground truth {name}", **common))
    if not found:
        raise MissingSource(f"No FLAIR patches found under {folder}",
                           "expected files like <domain>/<zone>/img/IMG_<id>.tif (with msk/MSK_<id>.tif)")
    return found


def default_catalog() -> Catalog:
    """The catalog named by ``$FLAIR_VIZ_CATALOG``, or the bundled demo catalog."""
    return Catalog.load(config.catalog_path())


class CatalogStore:
    """Reloads the catalog file when it changes, so batch jobs can register outputs while serving."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._mtime: float | None = None
        self._catalog: Catalog | None = None

    def get(self) -> Catalog:
        mtime = self.path.stat().st_mtime if self.path.exists() else None
        if self._catalog is None or mtime != self._mtime:
            self._catalog = Catalog.load(self.path)
            self._mtime = mtime
        return self._catalog
