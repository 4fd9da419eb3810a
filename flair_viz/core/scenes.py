"""Turn "many scenes" arguments into a list of scenes: catalog IDs or selections, FLAIR folders, globs, files.

Batch commands take whatever a user has at hand (a département folder in FLAIR layout, a glob over
an ortho mosaic's tiles, or the catalog they already browse in the app). Expanding all of them here,
once and up front, means a typo fails before any worker starts, and every scene gets a stable,
unique name that its outputs are keyed by, which is what makes a rerun able to skip finished work.
"""

from __future__ import annotations

import glob
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from flair_viz.core.catalog import IMG_RE, Catalog, Dataset
from flair_viz.core.describe import kind_of
from flair_viz.core.errors import InvalidInput, NotFound

CATALOG_PREFIX = "catalog:"
GLOB_CHARS = re.compile(r"[*?\[]")
RASTER_SUFFIXES = (".tif", ".tiff", ".vrt")


@dataclass(frozen=True)
class Scene:
    """One input image of a batch job; ``name`` keys its outputs (``PRED_<name>.tif``)."""

    name: str
    path: Path
    bands: tuple[str, ...] | None = None  # None: the FLAIR layout for the file's band count
    dataset_id: str = ""
    patch: str | None = None
    domain: str | None = None
    zone: str | None = None
    vintage: str | None = None


def scene_name(path: Path) -> str:
    """``IMG_000473.tif`` -> ``000473`` (so outputs pair with ``MSK_000473``); other files keep their stem."""
    m = IMG_RE.match(path.name)
    return m.group("id") if m else path.stem


def _from_dataset(ds: Dataset) -> Scene:
    if ds.role != "image":
        raise InvalidInput(f"Dataset {ds.id} has role {ds.role!r}; only images can be predicted",
                           "give IDs of aerial images (IMG_...), see `flair-viz catalog list`")
    return Scene(name=ds.patch or ds.id, path=ds.path, bands=tuple(ds.bands) or None, dataset_id=ds.id,
                 patch=ds.patch, domain=ds.domain, zone=ds.zone, vintage=ds.vintage)


def _from_file(path: Path, folder: Path | None = None) -> Scene:
    """A file scene; under a FLAIR layout ``<domain>/<zone>/img/IMG_<id>.tif`` domain and zone are kept."""
    path = path.resolve()
    domain = zone = None
    if path.parent.name.lower() == "img" and (folder is None or path.parent.parent != folder):
        zone = path.parent.parent.name
        domain = path.parent.parent.parent.name if path.parent.parent.parent != folder else None
    m = IMG_RE.match(path.name)
    return Scene(name=scene_name(path), path=path, patch=m.group("id") if m else None, domain=domain, zone=zone)


def _folder(folder: Path) -> list[Scene]:
    """FLAIR layout (``**/img/IMG_*.tif``) when present, otherwise every raster directly in the folder."""
    flair = sorted(p for p in folder.glob("**/img/IMG_*.tif*") if IMG_RE.match(p.name))
    if flair:
        return [_from_file(p, folder.resolve()) for p in flair]
    plain = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in RASTER_SUFFIXES)
    if not plain:
        raise NotFound(f"No scenes found in folder {folder}",
                       "give a folder in FLAIR layout (<domain>/<zone>/img/IMG_<id>.tif) or holding .tif files")
    return [_from_file(p) for p in plain]


def catalog_selection(catalog: Catalog, role: str = "image", domain: str | None = None,
                      zone: str | None = None, ids: Iterable[str] | None = None) -> list[Scene]:
    """Images of the catalog, optionally only some IDs, one domain or one zone.

    Zone and domain mosaics are left out unless asked for by ID: they are views over patches that
    are already selected, and predicting both would do the same work twice.
    """
    wanted = set(ids) if ids is not None else None
    if wanted:
        for ds_id in wanted:
            catalog.get(ds_id)  # unknown IDs fail with the catalog's own message
    out = [_from_dataset(d) for d in catalog.by_role(role)
           if (wanted is None or d.id in wanted) and (domain is None or d.domain == domain)
           and (zone is None or d.zone == zone) and (wanted is not None or kind_of(d) != "mosaic")]
    return out


def expand(inputs: Sequence[str], catalog: Catalog | None = None, domain: str | None = None,
           zone: str | None = None) -> list[Scene]:
    """Every scene named by ``inputs``, in order, without duplicates; names must be unique.

    Each input is, tried in this order: ``catalog:`` (every image in the catalog), a catalog ID, an
    existing folder, an existing file, or a glob. ``domain``/``zone`` then filter the result.
    """
    if not inputs:
        raise InvalidInput("No input scenes given", "give folders, globs, files or catalog IDs (or `catalog:`)")
    scenes: list[Scene] = []
    for text in inputs:
        if text.startswith(CATALOG_PREFIX):
            if catalog is None:
                raise InvalidInput(f"{text} needs a catalog", "pass --catalog FILE")
            role = text[len(CATALOG_PREFIX):] or "image"
            found = catalog_selection(catalog, role=role)
        elif catalog is not None and text in catalog:
            found = [_from_dataset(catalog.get(text))]
        elif Path(text).is_dir():
            found = _folder(Path(text))
        elif Path(text).is_file():
            found = [_from_file(Path(text))]
        elif GLOB_CHARS.search(text):
            found = [_from_file(Path(p)) for p in sorted(glob.glob(text, recursive=True))
                     if Path(p).is_file() and Path(p).suffix.lower() in RASTER_SUFFIXES]
            if not found:
                raise NotFound(f"The glob {text!r} matches no .tif/.vrt file", "check the pattern (quote it "
                               "so the shell does not expand it) and the current folder")
        else:
            raise NotFound(f"Input {text!r} is neither a catalog ID, a folder, a file nor a glob",
                           "check the path, or run `flair-viz catalog list` for the registered IDs")
        scenes.extend(found)
    scenes = [s for s in scenes if (domain is None or s.domain == domain) and (zone is None or s.zone == zone)]
    unique: dict[Path, Scene] = {}
    for s in scenes:
        unique.setdefault(s.path.resolve(), s)
    by_name: dict[str, Scene] = {}
    for s in unique.values():
        other = by_name.setdefault(s.name, s)
        if other is not s:
            raise InvalidInput(f"Two scenes have the same name {s.name!r}: {other.path} and {s.path}",
                               "outputs are named after scenes; run them in separate jobs with separate --out")
    if not by_name:
        raise NotFound("The inputs select no scene" + (f" in domain {domain}" if domain else "")
                       + (f" zone {zone}" if zone else ""), "check --domain/--zone and the inputs")
    return list(by_name.values())
