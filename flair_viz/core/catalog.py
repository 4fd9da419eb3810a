"""The catalog: every raster FLAIR Viz shows or computes on, registered under a stable ID.

The tile server opens rasters *only* through this catalog, by ID, so a request can never name a
file. Paths must lie under the catalog's data root unless an entry says ``outside_root = true``
(added explicitly by a person, never by a request).

Scanned FLAIR trees (``[[scan]]`` folders and ``[[index]]`` files written by ``catalog scan``) are held
as patch index tables (:mod:`flair_viz.core.index`): a 100,000-patch catalog loads in well under a
second because a row becomes a :class:`Dataset` only when it is asked for.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pandas as pd

from flair_viz.core import config, index, raster, scan, stack
from flair_viz.core.dataset import ID_RE, ROLES, Dataset, check_id
from flair_viz.core.errors import (
    FlairVizError,
    InvalidCatalog,
    MissingSource,
    OutsideDataRoot,
    UnknownDataset,
    context,
)

IMG_RE = index.IMG_RE


class Catalog:
    """An ordered set of datasets under one data root, loaded from and saved to a TOML file."""

    def __init__(self, root: Path, datasets: list[Dataset] | None = None, attribution: str = "",
                 source: Path | None = None) -> None:
        self.root = Path(root).resolve()
        self.attribution = attribution
        self.source = source
        self.sources: list[dict] = []  # the [[scan]] and [[index]] entries, written back by save()
        self.problems: list[str] = []  # files a [[scan]] left out, and why (the rest loads)
        self._by_id: dict[str, Dataset] = {}  # datasets added one by one (TOML entries, registrations)
        self._tables: list[index.PatchIndex] = []  # scanned trees: rows become Datasets only when asked for
        self._made: dict[str, Dataset] = {}
        self._removed: set[str] = set()
        self._lookup: dict[tuple[str, str], list[str]] | None = None  # (patch or mosaic key, role) -> IDs
        self._table: pd.DataFrame | None = None
        for ds in datasets or []:
            self.add(ds)

    # -- access -----------------------------------------------------------------------------
    def _locate(self, ds_id: str) -> tuple[int, int] | None:
        for t, table in enumerate(self._tables):
            i = table.locate(ds_id)
            if i is not None:
                return t, i
        return None

    def _in_tables(self, ds_id: str) -> bool:
        return ds_id not in self._removed and self._locate(ds_id) is not None

    def __iter__(self) -> Iterator[Dataset]:
        for t, table in enumerate(self._tables):
            for i, row in table.rows():
                ds_id = row["id"]
                if ds_id not in self._removed:
                    yield self._by_id.get(ds_id) or self._made.get(ds_id) or self._make(t, i, row)
        for ds_id, ds in self._by_id.items():
            if not self._tables or self._locate(ds_id) is None:
                yield ds

    def __len__(self) -> int:
        shadowed = sum(1 for i in self._by_id if self._tables and self._locate(i) is not None)
        return sum(map(len, self._tables)) - len(self._removed) + len(self._by_id) - shadowed

    def __contains__(self, ds_id: str) -> bool:
        return ds_id in self._by_id or self._in_tables(ds_id)

    def get(self, ds_id: str) -> Dataset:
        """The dataset with this ID, or :class:`UnknownDataset` saying how to list the known ones."""
        if ds_id in self._by_id:
            return self._by_id[ds_id]
        if ds_id not in self._removed and self._tables:
            if ds_id in self._made:
                return self._made[ds_id]
            where = self._locate(ds_id)
            if where is not None:
                return self._make(*where)
        raise UnknownDataset(f"Unknown dataset ID {ds_id!r}",
                             "run `flair-viz catalog list` to see registered IDs, or register it with "
                             "`flair-viz catalog scan DIR`")

    def _make(self, t: int, i: int, row: dict | None = None) -> Dataset:
        """An index row as a Dataset, built once: a 100k-patch catalog never builds them all up front."""
        r = row or self._tables[t].row(i)
        rel = r["path"]  # one Path parse per row: pathlib dominates building 200k of them
        path = Path(rel if rel.startswith("/") else f"{self.root}{os.sep}{rel}")
        ds = self._made[r["id"]] = Dataset(
            id=r["id"], path=path, role=r["role"], vintage=r["vintage"],
            domain=r["domain"], zone=r["zone"], patch=r["patch"], bands=tuple(r["bands"].split(",")) if r["bands"] else (),
            title=r["title"] or "", outside_root=bool(r["outside_root"]),
            extra={k: r[k] for k in ("camera", "mosaic") if r[k]})
        return ds

    def table(self) -> pd.DataFrame:
        """Every dataset as one row, in catalog order: the one view for table work (filters, listings, maps).

        Columns: ``id, role, path`` (absolute), ``domain, zone, vintage, patch, bands`` (comma-joined),
        ``title, mosaic`` (the key of a zone/domain mosaic, else ""), ``nomenclature, simulated``, the
        bounds ``left, bottom, right, top`` in EPSG:2154 and ``indexed``: false for an entry registered
        one by one, whose bounds are NaN (its header is not read here). An entry that replaces an index
        row (:meth:`add` with ``replace_existing``) is that row. Built once per change of the catalog.
        """
        if self._table is None:
            explicit = [{**{k: getattr(d, k) for k in ("id", "role", "domain", "zone", "vintage", "patch", "title",
                                                       "nomenclature", "simulated")},
                         "path": str(d.path), "bands": ",".join(d.bands), "mosaic": d.extra.get("mosaic", ""),
                         "indexed": False} for d in self._by_id.values()]
            self._table = index.catalog_table([t.df for t in self._tables], explicit, self._removed, self.root)
        return self._table

    def filter(self, role: str | None = None, domain: str | None = None, zone: str | None = None,
               year: str | None = None, kind: str | None = None) -> list[Dataset]:
        """Datasets matching every given field (``year`` is the vintage's first 4 characters; ``kind``
        ``patch`` or ``mosaic``), answered from the index tables without touching the other rows."""
        out: list[Dataset] = []
        for t, table in enumerate(self._tables):
            for i, row in table.rows(table.select(role, domain, zone, year, kind)):
                ds_id = row["id"]
                if ds_id not in self._removed:
                    out.append(self._by_id.get(ds_id) or self._made.get(ds_id) or self._make(t, i, row))
        for ds in self._by_id.values():
            if self._tables and self._locate(ds.id) is not None:
                continue
            if all(v is None or getattr(ds, k) == v for k, v in (("role", role), ("domain", domain), ("zone", zone))) \
                    and (year is None or (ds.vintage or "")[:4] == year) \
                    and (kind is None or (kind == "mosaic") == bool(ds.extra.get("mosaic") or
                                                                    Path(ds.path).suffix.lower() == ".vrt")):
                out.append(ds)
        return out

    def by_role(self, role: str) -> list[Dataset]:
        return self.filter(role=role) if self._tables else [d for d in self if d.role == role]

    def _ids_for(self, key: str, role: str) -> list[str]:
        """IDs of one role for a patch number or a mosaic key, from a lookup built once per change."""
        if self._lookup is None:
            lookup: dict[tuple[str, str], list[str]] = {}
            for df in (t.df for t in self._tables):
                keys = df["patch"].where(df["patch"].notna() & (df["patch"] != ""), df["mosaic"])
                for k, r, i in zip(keys, df["role"], df["id"]):
                    if k:
                        lookup.setdefault((k, r), []).append(i)
            for ds in self._by_id.values():
                k = ds.patch or ds.extra.get("mosaic")
                in_tables = self._tables and self._locate(ds.id) is not None
                if k and not in_tables:
                    lookup.setdefault((k, ds.role), []).append(ds.id)
                elif in_tables:  # an explicit entry replacing an index row may move it
                    for ids in lookup.values():
                        if ds.id in ids:
                            ids.remove(ds.id)
                    if k:
                        lookup.setdefault((k, ds.role), []).append(ds.id)
            self._lookup = lookup
        return [i for i in self._lookup.get((key, role), []) if i in self]

    def series(self, name: str) -> list[Dataset]:
        """The class rasters of one series, earliest vintage first (catalog order breaks ties)."""
        return sorted((d for d in self if d.series == name), key=lambda d: d.vintage or "")

    def series_names(self) -> list[str]:
        """Names of the series in the catalog, in order of first appearance."""
        return list(dict.fromkeys(d.series for d in self if d.series))

    def for_patch(self, patch: str, role: str) -> Dataset | None:
        """The first dataset of ``role`` for one patch (e.g. the image of a mask); for a ground truth use :meth:`truth_of`."""
        ids = self._ids_for(patch, role)
        return self.get(ids[0]) if ids else None

    def truth_of(self, ds: Dataset) -> Dataset | None:
        """The ground truth of a patch's image or prediction: the one every score and error layer uses.

        A patch can carry simulated later vintages (the change demo), so a real mask of the same
        vintage comes first, then any real mask, then simulated ones; catalog order breaks ties.
        """
        # A zone mosaic image's truth is the mask mosaic of its zone (Explore, the live error layer); a zone
        # prediction mosaic gets none, so metrics score its patches once, through their own PRED_ entries.
        key = ds.patch or (ds.extra.get("mosaic") if ds.role == "image" else None)
        if not key:
            return None
        truths = [self.get(i) for i in self._ids_for(key, "truth")]
        truths.sort(key=lambda d: (d.simulated, bool(ds.vintage) and d.vintage != ds.vintage))
        return truths[0] if truths else None

    # -- mutation ---------------------------------------------------------------------------
    def add(self, ds: Dataset, replace_existing: bool = False) -> Dataset:
        """Register a dataset; its path must be inside the data root unless marked ``outside_root``."""
        check_id(ds.id)
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
        if ds.id in self and not replace_existing and self.get(ds.id).path != path:
            raise InvalidCatalog(f"Dataset ID {ds.id!r} is already registered for {self.get(ds.id).path}",
                               "choose another ID, or remove the old entry first")
        ds = replace(ds, path=path, bands=tuple(ds.bands))
        self._by_id[ds.id] = ds
        self._removed.discard(ds.id)
        self._lookup = self._table = None
        return ds

    def add_index(self, table: pd.DataFrame, source: str = "") -> None:
        """Register a patch index's rows without building a Dataset per row; IDs, roles and paths are
        checked column-wise, and an ID already held by another index is refused by name."""
        bad = table[~table["id"].astype(str).str.match(ID_RE.pattern)]
        if len(bad):
            raise InvalidCatalog(f"Index {source}: invalid dataset ID {bad['id'].iloc[0]!r}", "rerun `flair-viz catalog scan`")
        roles = set(table["role"].unique().tolist()) - set(ROLES)
        if roles:
            raise InvalidCatalog(f"Index {source}: unknown role(s) {sorted(roles)}", f"use one of {', '.join(ROLES)}")
        outside = table[table["path"].str.startswith("/") & ~table["outside_root"].astype(bool)]
        if len(outside) or table["path"].str.contains("..", regex=False).any():
            p = outside["path"].iloc[0] if len(outside) else table["path"][table["path"].str.contains("..", regex=False)].iloc[0]
            raise OutsideDataRoot(f"Index {source}: {p} is outside the catalog's data root {self.root}",
                                  "scan a folder under the data root, or set data_root so that it holds the folder")
        new = index.PatchIndex(table, source)
        dup = [] if new.ids.is_unique else table["id"][table["id"].duplicated()].tolist()  # hashes reused by get
        taken = [i for t in self._tables for i in table["id"][table["id"].isin(t.ids)]] + dup
        if taken:
            raise InvalidCatalog(f"Index {source}: {len(taken)} dataset ID(s) appear twice (here or in another index), "
                                 f"e.g. {', '.join(taken[:3])}", "scan the common parent folder once, or remove one "
                                 "of the [[index]]/[[scan]] entries")
        self._tables.append(new)
        self._lookup = self._table = None

    def remove(self, ds_id: str) -> None:
        self.get(ds_id)
        self._by_id.pop(ds_id, None)
        if self._tables and self._locate(ds_id) is not None:
            self._removed.add(ds_id)
        self._lookup = self._table = None

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
        check_catalog_path(path)
        if not path.exists():
            raise MissingSource(f"Catalog file not found: {path}",
                               "create one with `flair-viz catalog scan DIR --catalog FILE`")
        return cls.from_text(read_text(path), path)

    @classmethod
    def from_text(cls, text: str, path: Path) -> Catalog:
        """The catalog ``text`` would be if it were the file ``path``: the writer checks an edit with it
        before replacing the file, and its errors name the real file, not a temp copy."""
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise InvalidCatalog(f"Catalog {path.name} is not valid TOML: {exc}",
                                 f"fix the syntax at that line of {path}") from None
        root = (path.parent / doc.get("data_root", ".")).resolve()
        cat = cls(root, attribution=doc.get("attribution", ""), source=path)
        for entry in doc.get("scan", []):
            cat.sources.append({"kind": "scan", **entry})
            with context(f"Catalog {path.name}, [[scan]] {entry.get('path')}"):
                table, problems = scan.cached_scan(root / entry["path"], root, entry.get("metadata"),
                                                   _levels(entry.get("mosaics", ["zone"])))
                cat.add_index(table, entry.get("path", ""))
                cat.problems += [f"[[scan]] {entry.get('path')}: left out: {p}" for p in problems]
        for entry in doc.get("index", []):
            cat.sources.append({"kind": "index", **entry})
            with context(f"Catalog {path.name}"):
                parquet = path.parent / entry["path"]
                cat.add_index(index.read_index(parquet), entry["path"])
                cat.problems += [f"[[index]] {entry['path']} (catalog scan {entry.get('folder', '')}): left out: {p}"
                                 for p in index.read_problems(parquet)]
        defined: dict[str, str] = {}  # ID -> where the [[dataset]] entry defining it is
        for n, entry in enumerate(doc.get("dataset", []), 1):
            where = f"[[dataset]] #{n} (path {entry.get('path')!r})"
            _check_unique(str(entry.get("id")), where, defined, cat, path)
            defined[str(entry.get("id"))] = where
            try:
                entry = dict(entry)
                entry["bands"] = tuple(entry.get("bands", ()))
                cat.add(Dataset(**entry))
            except TypeError as exc:
                raise InvalidCatalog(f"Catalog {path.name}: bad dataset entry {entry.get('id', '?')}: {exc}",
                                   "see docs/architecture.md for the dataset fields") from None
        for n, entry in enumerate(doc.get("stack", []), 1):  # BD ORTHO dalles + elevation as one image
            where = f"[[stack]] #{n} (id {entry.get('id')!r})"
            _check_unique(str(entry.get("id")), where, defined, cat, path)
            defined[str(entry.get("id"))] = where
            with context(f"Catalog {path.name}"):
                cat.add(stack.load(stack.StackEntry.from_toml(entry, where), root))
        return cat



def read_text(path: Path) -> str:
    """The catalog file's text; one that is not UTF-8 is named with the byte where it stops being so."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidCatalog(f"Catalog {path.name} is not UTF-8 text ({exc.reason} at byte {exc.start})",
                             f"save {path} as UTF-8") from None


def check_catalog_path(path: Path) -> None:
    """A folder given as the catalog (``--catalog data/``) is named with the file it probably meant."""
    if path.is_dir():
        inside = path / "catalog.toml"
        raise InvalidCatalog(f"The catalog {path} is a folder, not a TOML file",
                             f"give the catalog file, e.g. --catalog {inside}"
                             + ("" if inside.exists() else " (catalog scan creates it)"))


def _check_unique(ds_id: str, where: str, defined: dict[str, str], cat: Catalog, path: Path) -> None:
    """Two definitions of one ID are refused by name: letting the last one win silently showed one file
    under another's ID, and ``validate`` found nothing wrong."""
    first = defined.get(ds_id)
    if first is None and cat._in_tables(ds_id):
        t, i = cat._locate(ds_id)
        first = f"a patch indexed from {cat._tables[t].source} (file {cat._tables[t].row(i)['path']})"
    if first is not None:
        raise InvalidCatalog(f"Catalog {path.name}: dataset ID {ds_id!r} is defined twice: by {first} and by {where}",
                             f"rename or remove one of them in {path}: IDs must be unique")


def scan_flair_folder(folder: str | os.PathLike[str], metadata: str | os.PathLike[str] | None = None,
                      root: Path | None = None) -> list[Dataset]:
    """Datasets of every patch of a FLAIR tree ``<domain>/<zone>/img/IMG_<id>.tif`` (+ ``msk/MSK_<id>.tif``).

    Strict: the first problem found (broken file, duplicate ID, misaligned mask) is raised. ``catalog
    scan`` uses :func:`flair_viz.core.index.scan_tree` instead, which lists them all and indexes the rest.
    """
    folder = Path(folder)
    root = Path(root).resolve() if root else folder.resolve()
    result = index.scan_tree(folder, root, metadata)
    if result.errors:
        raise result.errors[0]
    cat = Catalog(root)
    cat.add_index(result.rows, str(folder))
    return list(cat)


def _levels(value: str | list[str]) -> list[str]:
    """``mosaics = "zone,domain"`` or ``["zone", "domain"]`` (``"none"`` or ``[]``: no mosaics)."""
    levels = value.split(",") if isinstance(value, str) else list(value)
    return [lv.strip() for lv in levels if lv.strip() and lv.strip() != "none"]


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
