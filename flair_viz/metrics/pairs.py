"""What to compare: ground truth / prediction pairs from the catalog, two folders, two files or two IDs.

A patch present on one side only is an error that names it: silently scoring a subset would
overstate a model.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

from flair_viz.core.catalog import Catalog, Dataset
from flair_viz.core.errors import InvalidInput, NotFound, RasterNotFound
from flair_viz.core.index import load_metadata

MSK_RE = re.compile(r"^MSK_(?P<id>.+?)\.tiff?$", re.IGNORECASE)  # any name, e.g. "MSK_ölé 1.tif"
PRED_RE = re.compile(r"^PRED_(?P<id>.+?)\.tiff?$", re.IGNORECASE)
NOT_AN_INPUT_FIX = "check the path, or run `flair-viz catalog list` for the registered IDs"


@dataclass(frozen=True)
class Pair:
    """One ground truth / prediction pair of the same patch, with what the store records about it."""

    patch: str
    truth: Path
    pred: Path
    model: str
    truth_id: str = ""
    pred_id: str = ""
    domain: str | None = None
    zone: str | None = None
    date: str | None = None
    truth_nomenclature: str = "flair1"
    pred_nomenclature: str = "flair1"


def model_name(ds: Dataset) -> str:
    """The model a prediction dataset came from: ``extra["model"]``, else its title, else its ID."""
    return ds.extra.get("model") or ds.title or ds.id


def catalog_pairs(catalog: Catalog) -> list[Pair]:
    """Every prediction in the catalog whose patch has a ground truth (one pair per prediction)."""
    pairs = []
    for pred in catalog.by_role("prediction"):
        truth = catalog.truth_of(pred)
        if truth is not None:
            pairs.append(dataset_pair(truth, pred))
    return pairs


def unpaired_predictions(catalog: Catalog) -> list[Dataset]:
    """Predictions :func:`catalog_pairs` cannot score (no patch, or no ground truth for it), to report them."""
    return [d for d in catalog.by_role("prediction") if catalog.truth_of(d) is None]


def dataset_pair(truth: Dataset, pred: Dataset) -> Pair:
    """The pair of two catalog datasets; place and date come from the truth first."""
    return Pair(patch=truth.patch or pred.patch or truth.id, truth=truth.path, pred=pred.path,
                model=model_name(pred), truth_id=truth.id, pred_id=pred.id, domain=truth.domain or pred.domain,
                zone=truth.zone or pred.zone, date=truth.vintage or pred.vintage,
                truth_nomenclature=truth.nomenclature, pred_nomenclature=pred.nomenclature)


def _index_folder(folder: Path, pattern: re.Pattern[str], what: str) -> dict[str, Path]:
    """Patch ID -> file for every ``pattern`` match in any subfolder; two files for one patch is an error."""
    found: dict[str, Path] = {}
    for f in sorted(folder.rglob("*")):
        m = pattern.match(f.name)
        if not m or not f.is_file():
            continue
        pid = m.group("id")
        if pid in found:
            raise InvalidInput(f"Patch {pid}: two {what} files, {found[pid]} and {f}",
                               "keep one file per patch in the folder, or evaluate the subfolders separately")
        found[pid] = f
    return found


def _match_suffixed(preds: dict[str, Path], patch_ids: set[str]) -> dict[str, Path]:
    """Accept ``PRED_<id>_<suffix>.tif`` (e.g. ``PRED_000473_demo.tif``) for a known patch ``<id>``."""
    out: dict[str, Path] = {}
    for name, path in preds.items():
        pid = name if name in patch_ids else max((p for p in patch_ids if name.startswith(p + "_")), key=len, default=name)
        if pid in out:
            raise InvalidInput(f"Patch {pid}: two prediction files, {out[pid]} and {path}",
                               "keep one prediction per patch in the folder (one folder per model)")
        out[pid] = path
    return out


def _first(ids: list[str], n: int = 10) -> str:
    return ", ".join(ids[:n]) + (" …" if len(ids) > n else "")


def folder_pairs(truth_dir: str | os.PathLike[str], pred_dir: str | os.PathLike[str], model: str | None = None,
                 pred_nomenclature: str = "flair1") -> list[Pair]:
    """Match ``MSK_<id>.tif`` under ``truth_dir`` with ``PRED_<id>[_<suffix>].tif`` under ``pred_dir`` by patch ID.

    Domain and zone come from a FLAIR layout (``<domain>/<zone>/msk/MSK_<id>.tif``), dates from a
    ``*metadata*.json`` at the top of ``truth_dir``.
    """
    truth_dir, pred_dir = Path(truth_dir), Path(pred_dir)
    truths = _index_folder(truth_dir, MSK_RE, "ground-truth (MSK_*)")
    preds = _match_suffixed(_index_folder(pred_dir, PRED_RE, "prediction (PRED_*)"), set(truths))
    if not truths:
        raise RasterNotFound(f"No ground-truth files MSK_<id>.tif under {truth_dir}",
                             "give the folder holding the FLAIR masks (any subfolder depth)")
    if not preds:
        raise RasterNotFound(f"No prediction files PRED_<id>.tif under {pred_dir}",
                             "give the folder holding the predictions, named PRED_<id>.tif")
    no_pred, no_truth = sorted(set(truths) - set(preds)), sorted(set(preds) - set(truths))
    if no_pred or no_truth:
        parts = ([f"patch {_first(no_pred)} has no PRED_<id>.tif in {pred_dir}"] if no_pred else []) + \
                ([f"patch {_first(no_truth)} has no MSK_<id>.tif in {truth_dir}"] if no_truth else [])
        raise RasterNotFound("Missing partner file: " + "; ".join(parts),
                             "add the missing files, or evaluate folders that hold the same patches")
    meta = load_metadata(next(iter(sorted(truth_dir.glob("*metadata*.json"))), None))
    model = model or pred_dir.resolve().name
    pairs = []
    for pid, t in sorted(truths.items()):
        rel = t.relative_to(truth_dir).parts
        in_layout = len(rel) >= 3 and rel[-2].lower() == "msk"
        domain = rel[-4] if in_layout and len(rel) >= 4 else None
        zone = rel[-3] if in_layout else None
        md = meta.get(f"IMG_{pid}") if isinstance(meta.get(f"IMG_{pid}"), dict) else {}
        pairs.append(Pair(patch=pid, truth=t.resolve(), pred=preds[pid].resolve(), model=model,
                          domain=md.get("domain", domain), zone=md.get("zone", zone), date=md.get("date"),
                          pred_nomenclature=pred_nomenclature))
    return pairs


def _side(value: str, catalog: Catalog | None, role: str) -> tuple[Path, Dataset | None]:
    """A ``--truth``/``--pred`` argument as a file, or a catalog dataset by ID."""
    p = Path(value)
    if p.is_file():
        return p.resolve(), None
    if catalog is not None and value in catalog:
        ds = catalog.get(value)
        if not ds.is_class_raster:
            raise InvalidInput(f"Dataset {value} is an {ds.role}, not a class raster",
                               f"give the ID of a {role} dataset (see `flair-viz catalog list`)")
        return ds.path, ds
    raise NotFound(f"--{role} {value!r} is neither a folder, a file nor a catalog dataset ID", NOT_AN_INPUT_FIX)


def _file_pair(truth: str, pred: str, catalog: Catalog | None, model: str | None, pred_nomenclature: str) -> Pair:
    """Two files or two IDs (or one of each): what is known of each side comes from the catalog."""
    tpath, tds = _side(truth, catalog, "truth")
    ppath, pds = _side(pred, catalog, "pred")
    if tds is not None and pds is not None:
        pair = dataset_pair(tds, pds)
        return pair if model is None else replace(pair, model=model)
    m = MSK_RE.match(tpath.name) or PRED_RE.match(ppath.name)
    patch = tds.patch if tds and tds.patch else (m.group("id") if m else tpath.stem)
    return Pair(patch=patch, truth=tpath, pred=ppath,
                model=model or (model_name(pds) if pds else ppath.parent.name),
                truth_id=tds.id if tds else "", pred_id=pds.id if pds else "",
                domain=tds.domain if tds else None, zone=tds.zone if tds else None, date=tds.vintage if tds else None,
                truth_nomenclature=tds.nomenclature if tds else "flair1",
                pred_nomenclature=pds.nomenclature if pds else pred_nomenclature)


def resolve_pairs(truth: str | None, pred: str | None, catalog: Catalog | None = None, model: str | None = None,
                  pred_nomenclature: str = "flair1") -> list[Pair]:
    """Turn CLI-style arguments into pairs: nothing (the catalog's pairs), two folders, two files or IDs."""
    if truth is None and pred is None:
        if catalog is None:
            raise InvalidInput("No truth/prediction given and no catalog", "pass --truth and --pred")
        pairs = catalog_pairs(catalog)
        if not pairs:
            raise NotFound("The catalog has no prediction with a ground truth of the same patch",
                           "register predictions with role \"prediction\" and a patch, or pass --truth and --pred")
        return pairs
    if truth is None or pred is None:
        raise InvalidInput("Only one of --truth and --pred was given", "give both, or neither to use the catalog's pairs")
    for role, value in (("truth", truth), ("pred", pred)):
        if not Path(value).exists() and (catalog is None or value not in catalog):
            raise NotFound(f"--{role} {value!r} is neither a folder, a file nor a catalog dataset ID", NOT_AN_INPUT_FIX)
    if Path(truth).is_dir() or Path(pred).is_dir():
        if not (Path(truth).is_dir() and Path(pred).is_dir()):
            raise InvalidInput(f"--truth {truth!r} and --pred {pred!r} are not both folders",
                               "give two folders, two files or two catalog IDs")
        return folder_pairs(truth, pred, model=model, pred_nomenclature=pred_nomenclature)
    return [_file_pair(truth, pred, catalog, model, pred_nomenclature)]
