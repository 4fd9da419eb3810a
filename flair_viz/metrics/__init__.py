"""Evaluation: per-patch confusion matrices stored in Parquet, and every score derived from them.

Why per patch: analysts filter by domain, zone, date or patch and compare models. Keeping one 19×19
count matrix per truth/prediction pair makes every such view a sum of stored matrices (milliseconds),
never a re-read of rasters. Scores are computed from the *summed* matrix, like IGN's FLAIR scripts
(dataset-level IoU, not a mean of per-patch IoUs).

Conventions:
- class rasters are compared in FLAIR-1 values 1..19 (FLAIR-HUB rasters are converted first);
  0 and any value outside 1..19, in either raster, make the pixel *ignored* and are counted;
- matrices are int64, rows = truth, columns = prediction, index ``v - 1`` for FLAIR-1 value ``v``;
- a class absent from both truth and prediction has an undefined IoU (NaN). mIoU is the mean over
  the defined ones (``nanmean``, as FLAIR's ``generate_miou.py``), and :class:`Scores` lists the
  classes it left out so a page can say so.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from rasterio.windows import Window

from flair_viz.core import atomic, classes, raster
from flair_viz.core.catalog import Catalog, Dataset, load_metadata
from flair_viz.core.errors import AlignmentError, FlairVizError, RasterError

N = classes.N_CLASSES
PROTOCOLS = ("flair1", "full")
COUNT_COLUMNS: tuple[str, ...] = tuple(f"t{t:02d}_p{p:02d}" for t in range(1, N + 1) for p in range(1, N + 1))
KEY_COLUMNS = ("truth_path", "truth_mtime_ns", "truth_size", "truth_nomenclature",
               "pred_path", "pred_mtime_ns", "pred_size", "pred_nomenclature")
META_COLUMNS = ("patch", "domain", "zone", "date", "minx", "miny", "maxx", "maxy", "model", "truth_id", "pred_id",
                *KEY_COLUMNS, "ignored")
MSK_RE = re.compile(r"^MSK_(?P<id>.+?)\.tiff?$", re.IGNORECASE)  # any name, e.g. "MSK_ölé 1.tif"
PRED_RE = re.compile(r"^PRED_(?P<id>.+?)\.tiff?$", re.IGNORECASE)
STRIP_ROWS = 2048  # rows read at once: bounds memory on whole-scene rasters, one read for a 512 px patch



# --------------------------------------------------------------------------------------------
# Counting
# --------------------------------------------------------------------------------------------
def _class_values(a: np.ndarray, nomenclature: str) -> np.ndarray:
    """FLAIR-1 uint8 values; out-of-byte values (e.g. in an int16 raster) become 0 so they are ignored."""
    if a.dtype != np.uint8:
        a = np.where((a < 0) | (a > 255), 0, a).astype(np.uint8)
    return classes.to_flair1(a, nomenclature).astype(np.uint8, copy=False)


def confusion(truth: np.ndarray, pred: np.ndarray, chunk: int = 1 << 19) -> tuple[np.ndarray, int]:
    """19×19 counts (rows truth) and the number of ignored pixels, by one ``np.bincount`` per chunk.

    Each pixel becomes the 16-bit code ``truth << 8 | pred`` and one bincount over 65,536 bins counts
    every (truth, pred) byte pair; the FLAIR-1 block 1..19 × 1..19 is then cut out, and all the
    rest (0, values above 19) is the ignored count. No boolean masking and no per-pixel lookup:
    chunks keep the bincount's intp copy small and in cache.
    """
    if truth.shape != pred.shape:
        raise AlignmentError(f"truth {truth.shape} and prediction {pred.shape} differ in shape",
                             "compare rasters on the same pixel grid")
    t = _class_values(truth, "flair1").reshape(-1)
    p = _class_values(pred, "flair1").reshape(-1)
    counts = np.zeros(1 << 16, dtype=np.int64)
    for start in range(0, t.size, chunk):
        code = t[start : start + chunk].astype(np.uint16)
        code <<= 8
        code |= p[start : start + chunk]
        counts += np.bincount(code, minlength=1 << 16)
    cm = counts.reshape(256, 256)[1 : N + 1, 1 : N + 1].copy()
    return cm, int(t.size - cm.sum())


def confusion_torch(truth: np.ndarray, pred: np.ndarray, device: str = "cuda") -> tuple[np.ndarray, int]:
    """Same counts as :func:`confusion` with ``torch.bincount`` on ``device``: pays off on whole scenes on a GPU."""
    import torch

    if truth.shape != pred.shape:
        raise AlignmentError(f"truth {truth.shape} and prediction {pred.shape} differ in shape",
                             "compare rasters on the same pixel grid")
    t = torch.from_numpy(np.ascontiguousarray(_class_values(truth, "flair1")).reshape(-1)).to(device)
    p = torch.from_numpy(np.ascontiguousarray(_class_values(pred, "flair1")).reshape(-1)).to(device)
    counts = torch.bincount((t.int() << 8) | p.int(), minlength=1 << 16).cpu().numpy()
    cm = counts.reshape(256, 256)[1 : N + 1, 1 : N + 1].astype(np.int64)
    return cm, int(truth.size - cm.sum())


# --------------------------------------------------------------------------------------------
# Pairs: what to compare
# --------------------------------------------------------------------------------------------
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
        truth = truth_for(catalog, pred)
        if truth is not None:
            pairs.append(_dataset_pair(truth, pred))
    return pairs


def truth_for(catalog: Catalog, pred: Dataset) -> Dataset | None:
    """The ground truth a prediction is scored against: same patch; a real (not simulated) mask of the
    same vintage first, since a patch can also carry simulated later vintages for the change demo."""
    if not pred.patch:
        return None
    truths = [d for d in catalog.by_role("truth") if d.patch == pred.patch]
    truths.sort(key=lambda d: (d.simulated, d.vintage != pred.vintage if pred.vintage else False))
    return truths[0] if truths else None


def unpaired_predictions(catalog: Catalog) -> list[Dataset]:
    """Predictions :func:`catalog_pairs` cannot score (no patch, or no ground truth for it), to report them."""
    return [d for d in catalog.by_role("prediction") if truth_for(catalog, d) is None]


def _dataset_pair(truth: Dataset, pred: Dataset) -> Pair:
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
            raise FlairVizError(f"Patch {pid}: two {what} files, {found[pid]} and {f}",
                                "keep one file per patch in the folder, or evaluate the subfolders separately")
        found[pid] = f
    return found


def _match_suffixed(preds: dict[str, Path], patch_ids: set[str]) -> dict[str, Path]:
    """Accept ``PRED_<id>_<suffix>.tif`` (e.g. ``PRED_000473_demo.tif``) for a known patch ``<id>``."""
    out: dict[str, Path] = {}
    for name, path in preds.items():
        pid = name if name in patch_ids else max((p for p in patch_ids if name.startswith(p + "_")), key=len, default=name)
        if pid in out:
            raise FlairVizError(f"Patch {pid}: two prediction files, {out[pid]} and {path}",
                                "keep one prediction per patch in the folder (one folder per model)")
        out[pid] = path
    return out


def folder_pairs(truth_dir: str | os.PathLike[str], pred_dir: str | os.PathLike[str], model: str | None = None,
                 pred_nomenclature: str = "flair1") -> list[Pair]:
    """Match ``MSK_<id>.tif`` under ``truth_dir`` with ``PRED_<id>[_<suffix>].tif`` under ``pred_dir`` by patch ID.

    Domain and zone come from a FLAIR layout (``<domain>/<zone>/msk/MSK_<id>.tif``), dates from a
    ``*metadata*.json`` at the top of ``truth_dir``. A patch present on one side only is an error that
    names it: silently scoring a subset would overstate a model.
    """
    truth_dir, pred_dir = Path(truth_dir), Path(pred_dir)
    truths = _index_folder(truth_dir, MSK_RE, "ground-truth (MSK_*)")
    preds = _match_suffixed(_index_folder(pred_dir, PRED_RE, "prediction (PRED_*)"), set(truths))
    if not truths:
        raise RasterError(f"No ground-truth files MSK_<id>.tif under {truth_dir}",
                          "give the folder holding the FLAIR masks (any subfolder depth)")
    if not preds:
        raise RasterError(f"No prediction files PRED_<id>.tif under {pred_dir}",
                          "give the folder holding the predictions, named PRED_<id>.tif")
    no_pred, no_truth = sorted(set(truths) - set(preds)), sorted(set(preds) - set(truths))
    if no_pred or no_truth:
        parts = []
        if no_pred:
            parts.append(f"patch {', '.join(no_pred[:10])}{' …' if len(no_pred) > 10 else ''} has no PRED_<id>.tif in {pred_dir}")
        if no_truth:
            parts.append(f"patch {', '.join(no_truth[:10])}{' …' if len(no_truth) > 10 else ''} has no MSK_<id>.tif in {truth_dir}")
        raise FlairVizError("Missing partner file: " + "; ".join(parts),
                            "add the missing files, or evaluate folders that hold the same patches")
    meta = load_metadata(next(iter(sorted(truth_dir.glob("*metadata*.json"))), None))
    model = model or pred_dir.resolve().name
    pairs = []
    for pid, t in sorted(truths.items()):
        rel = t.relative_to(truth_dir).parts
        domain = rel[-4] if len(rel) >= 4 and rel[-2].lower() == "msk" else None
        zone = rel[-3] if len(rel) >= 3 and rel[-2].lower() == "msk" else None
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
            raise FlairVizError(f"Dataset {value} is an {ds.role}, not a class raster",
                                f"give the ID of a {role} dataset (see `flair-viz catalog list`)")
        return ds.path, ds
    raise FlairVizError(f"--{role} {value!r} is neither a folder, a file nor a catalog dataset ID",
                        "check the path, or run `flair-viz catalog list` for the registered IDs")


def resolve_pairs(truth: str | None, pred: str | None, catalog: Catalog | None = None, model: str | None = None,
                  pred_nomenclature: str = "flair1") -> list[Pair]:
    """Turn CLI-style arguments into pairs: nothing (the catalog's pairs), two folders, two files or IDs."""
    if truth is None and pred is None:
        if catalog is None:
            raise FlairVizError("No truth/prediction given and no catalog", "pass --truth and --pred")
        pairs = catalog_pairs(catalog)
        if not pairs:
            raise FlairVizError("The catalog has no prediction with a ground truth of the same patch",
                                "register predictions with role \"prediction\" and a patch, or pass --truth and --pred")
        return pairs
    if truth is None or pred is None:
        raise FlairVizError("Only one of --truth and --pred was given", "give both, or neither to use the catalog's pairs")
    for role, value in (("truth", truth), ("pred", pred)):
        if not Path(value).exists() and (catalog is None or value not in catalog):
            raise FlairVizError(f"--{role} {value!r} is neither a folder, a file nor a catalog dataset ID",
                                "check the path, or run `flair-viz catalog list` for the registered IDs")
    if Path(truth).is_dir() or Path(pred).is_dir():
        if not (Path(truth).is_dir() and Path(pred).is_dir()):
            raise FlairVizError(f"--truth {truth!r} and --pred {pred!r} are not both folders",
                                "give two folders, two files or two catalog IDs")
        return folder_pairs(truth, pred, model=model, pred_nomenclature=pred_nomenclature)
    tpath, tds = _side(truth, catalog, "truth")
    ppath, pds = _side(pred, catalog, "pred")
    if tds is not None and pds is not None:
        pair = _dataset_pair(tds, pds)
        return [pair if model is None else Pair(**{**pair.__dict__, "model": model})]
    m = MSK_RE.match(tpath.name) or PRED_RE.match(ppath.name)
    patch = tds.patch if tds and tds.patch else (m.group("id") if m else tpath.stem)
    return [Pair(patch=patch, truth=tpath, pred=ppath,
                 model=model or (model_name(pds) if pds else ppath.parent.name),
                 truth_id=tds.id if tds else "", pred_id=pds.id if pds else "",
                 domain=tds.domain if tds else None, zone=tds.zone if tds else None, date=tds.vintage if tds else None,
                 truth_nomenclature=tds.nomenclature if tds else "flair1",
                 pred_nomenclature=pds.nomenclature if pds else pred_nomenclature)]


# --------------------------------------------------------------------------------------------
# The store: one row per pair, 361 count columns
# --------------------------------------------------------------------------------------------
@dataclass
class MetricsTable:
    """Stored per-pair metadata (``meta``) and the matching ``(n, 19, 19)`` int64 count matrices."""

    meta: pd.DataFrame
    matrices: np.ndarray
    _dates: pd.Series | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.meta)

    @classmethod
    def empty(cls) -> MetricsTable:
        return cls(pd.DataFrame({c: pd.Series(dtype=object) for c in META_COLUMNS}), np.zeros((0, N, N), np.int64))

    @property
    def dates(self) -> pd.Series:
        """Dates parsed once (a year-only vintage is its 1 January), for date-range filters."""
        if self._dates is None:
            self._dates = pd.to_datetime(self.meta["date"], errors="coerce", format="ISO8601")
        return self._dates

    def select(self, mask: np.ndarray) -> MetricsTable:
        mask = np.asarray(mask, dtype=bool)
        return MetricsTable(self.meta[mask].reset_index(drop=True), self.matrices[mask])

    def total(self, mask: np.ndarray | None = None) -> np.ndarray:
        """The summed 19×19 matrix of the selected rows: the only aggregation every view needs."""
        m = self.matrices if mask is None else self.matrices[np.asarray(mask, dtype=bool)]
        return m.sum(axis=0, dtype=np.int64) if len(m) else np.zeros((N, N), np.int64)

    def to_frame(self) -> pd.DataFrame:
        counts = pd.DataFrame(self.matrices.reshape(len(self), N * N), columns=list(COUNT_COLUMNS), dtype=np.int64)
        return pd.concat([self.meta.reset_index(drop=True), counts], axis=1)

    @classmethod
    def from_frame(cls, df: pd.DataFrame) -> MetricsTable:
        missing = [c for c in (*META_COLUMNS, *COUNT_COLUMNS) if c not in df.columns]
        if missing:
            raise FlairVizError(f"The metrics file lacks columns {missing[:5]}{' …' if len(missing) > 5 else ''}",
                                "it was not written by `flair-viz evaluate`; delete it or give another --out")
        mats = df[list(COUNT_COLUMNS)].to_numpy(dtype=np.int64).reshape(len(df), N, N)
        return cls(df[list(META_COLUMNS)].reset_index(drop=True), mats)

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> MetricsTable:
        """Load a store; a missing file is an empty table (nothing computed yet)."""
        path = Path(path)
        if not path.exists():
            return cls.empty()
        try:
            df = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several types for a corrupt file
            raise FlairVizError(f"Cannot read the metrics file {path}: {str(exc).splitlines()[0][:160]}",
                                "delete it (it will be recomputed) or give another --out") from None
        return cls.from_frame(df)

    def write(self, path: str | os.PathLike[str]) -> Path:
        path = Path(path)
        if path.is_dir():
            raise FlairVizError(f"The metrics output {path} is a folder", "give a file name, e.g. metrics.parquet")
        try:
            with atomic.atomic_path(path) as tmp:
                self.to_frame().to_parquet(tmp, index=False)
        except OSError as exc:
            raise FlairVizError(f"Cannot write the metrics file {path}: {exc.strerror or exc}",
                                "choose a writable location with --out (or $FLAIR_VIZ_METRICS)") from None
        return path


def input_key(pair: Pair) -> dict:
    """What identifies a computed pair: both files' path, mtime and size, and their nomenclatures."""
    key = {}
    for side, path, nom in (("truth", pair.truth, pair.truth_nomenclature), ("pred", pair.pred, pair.pred_nomenclature)):
        try:
            st = Path(path).stat()
        except FileNotFoundError:
            raise RasterError(f"Patch {pair.patch}: {side} file not found: {path}",
                              "check the path, or rescan the catalog if the file moved") from None
        key |= {f"{side}_path": str(Path(path).resolve()), f"{side}_mtime_ns": int(st.st_mtime_ns),
                f"{side}_size": int(st.st_size), f"{side}_nomenclature": nom}
    return key


def _bounds_2154(info: raster.RasterInfo) -> tuple[float, float, float, float]:
    if info.crs is None:
        return (float("nan"),) * 4
    if info.crs == raster.LAMBERT93:
        return tuple(float(v) for v in info.bounds)
    from rasterio.warp import transform_bounds

    return tuple(float(v) for v in transform_bounds(info.crs, raster.LAMBERT93, *info.bounds))


def compute_pair(pair: Pair, use_torch: bool = False) -> tuple[dict, np.ndarray]:
    """Check one pair's grids and count its confusion, strip by strip; errors name the patch."""
    try:
        tinfo = raster.check_mask(pair.truth, pair.truth_nomenclature, scan_values=False)
        pinfo = raster.check_mask(pair.pred, pair.pred_nomenclature, scan_values=False)
        raster.check_same_grid(tinfo, pinfo)
        total, ignored = np.zeros((N, N), np.int64), 0
        count = confusion_torch if use_torch else confusion
        with raster.open_raster(pair.truth) as tds, raster.open_raster(pair.pred) as pds:
            for row in range(0, tinfo.height, STRIP_ROWS):
                win = Window(0, row, tinfo.width, min(STRIP_ROWS, tinfo.height - row))
                try:
                    t = _class_values(tds.read(1, window=win), pair.truth_nomenclature)
                    p = _class_values(pds.read(1, window=win), pair.pred_nomenclature)
                except Exception as exc:
                    raise RasterError(f"Cannot read the pixels of {pair.truth.name} or {pair.pred.name}: "
                                      f"{str(exc).splitlines()[0][:160]}", "the file is probably truncated; re-export it") from None
                cm, ign = count(t, p)
                total += cm
                ignored += ign
    except FlairVizError as exc:
        raise type(exc)(f"Patch {pair.patch}: {exc.problem}", exc.fix) from None
    minx, miny, maxx, maxy = _bounds_2154(tinfo)
    row_meta = {"patch": pair.patch, "domain": pair.domain, "zone": pair.zone, "date": pair.date,
                "minx": minx, "miny": miny, "maxx": maxx, "maxy": maxy, "model": pair.model,
                "truth_id": pair.truth_id, "pred_id": pair.pred_id, **input_key(pair), "ignored": int(ignored)}
    return row_meta, total


@dataclass(frozen=True)
class EvaluationRun:
    """The rows for the requested pairs, and how many were computed versus reused from the store."""

    table: MetricsTable
    computed: int
    reused: int


def evaluate(pairs: Sequence[Pair], store: str | os.PathLike[str] | None = None, progress: bool = False,
             use_torch: bool = False) -> EvaluationRun:
    """Compute the pairs not yet in ``store`` (same input key), save the store, return the pairs' rows.

    Rows of other pairs already in the store are kept, so one store can gather several runs. The
    store is rewritten atomically once at the end: an interrupted run leaves the previous file intact.
    """
    if store and Path(store).is_dir():
        raise FlairVizError(f"The metrics output {store} is a folder", "give a file name, e.g. metrics.parquet")
    stored = MetricsTable.read(store) if store else MetricsTable.empty()
    index = {tuple(r): i for i, r in enumerate(stored.meta[list(KEY_COLUMNS)].itertuples(index=False, name=None))}
    rows, mats, reused = [], [], 0
    it: Iterable[Pair] = pairs
    if progress:
        from tqdm import tqdm

        it = tqdm(pairs, desc="evaluating", unit="patch", file=sys.stderr)
    for pair in it:
        key = tuple(input_key(pair)[c] for c in KEY_COLUMNS)
        if key in index:
            i = index[key]
            meta = stored.meta.iloc[i].to_dict() | {"model": pair.model, "truth_id": pair.truth_id,
                                                   "pred_id": pair.pred_id}
            rows.append(meta)
            mats.append(stored.matrices[i])
            reused += 1
            continue
        meta, cm = compute_pair(pair, use_torch=use_torch)
        rows.append(meta)
        mats.append(cm)
    result = MetricsTable(pd.DataFrame(rows, columns=list(META_COLUMNS)),
                          np.stack(mats) if mats else np.zeros((0, N, N), np.int64))
    if store:
        mine = {(r["truth_path"], r["pred_path"]) for r in rows}
        keep = np.array([(t, p) not in mine for t, p in zip(stored.meta["truth_path"], stored.meta["pred_path"])],
                        dtype=bool)
        others = stored.select(keep) if len(stored) else stored
        merged = MetricsTable(pd.concat([others.meta, result.meta], ignore_index=True) if len(others) else result.meta,
                              np.concatenate([others.matrices, result.matrices]))
        if len(pairs) - reused or len(merged) != len(stored):
            merged.write(store)
    return EvaluationRun(result, computed=len(pairs) - reused, reused=reused)


# --------------------------------------------------------------------------------------------
# Views and scores, from matrices only
# --------------------------------------------------------------------------------------------
def _check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise FlairVizError(f"Unknown protocol {protocol!r}", "use 'flair1' (13 classes, mIoU over 12) or 'full' (19)")


def protocol_members(protocol: str) -> list[list[int]]:
    """FLAIR-1 values behind each class of a view (flair1: the last one is 13..19 merged as "other")."""
    _check_protocol(protocol)
    if protocol == "full":
        return [[v] for v in range(1, N + 1)]
    lut = classes.protocol_flair1_lut()
    return [[v for v in range(1, N + 1) if lut[v] == k] for k in range(1, classes.PROTOCOL_FLAIR1_N + 1)]


def protocol_colors(protocol: str) -> list[str]:
    """Bar colours of a view: the FLAIR colour of each class; merged "other" takes the colour of 19 "other"."""
    return [classes.BY_VALUE[m[0]].color if len(m) == 1 else classes.BY_KEY["other"].color
            for m in protocol_members(protocol)]


def miou_classes(protocol: str) -> int:
    """How many leading classes the mIoU averages: 12 in the FLAIR-1 protocol, all 19 in the full view."""
    _check_protocol(protocol)
    return classes.PROTOCOL_FLAIR1_MIOU_N if protocol == "flair1" else N


def view(cm: np.ndarray, protocol: str) -> np.ndarray:
    """A 19×19 matrix (or a stack ``(..., 19, 19)``) in a protocol's classes, by summing merged rows/columns."""
    members = protocol_members(protocol)
    merge = np.zeros((N, len(members)), dtype=np.int64)
    for k, vals in enumerate(members):
        merge[[v - 1 for v in vals], k] = 1
    return merge.T @ cm @ merge


@dataclass(frozen=True)
class Scores:
    """Per-class and headline scores of one matrix in one protocol; NaN means undefined (no pixels)."""

    protocol: str
    names: list[str]
    matrix: np.ndarray
    iou: np.ndarray
    f1: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    miou: float
    oa: float
    undefined_in_miou: list[str]

    @property
    def support(self) -> np.ndarray:
        return self.matrix.sum(axis=1)

    def table(self) -> pd.DataFrame:
        """One row per class, for display and CSV export."""
        return pd.DataFrame({"class": self.names, "iou": self.iou, "f1": self.f1, "precision": self.precision,
                             "recall": self.recall, "truth_pixels": self.support,
                             "predicted_pixels": self.matrix.sum(axis=0),
                             "in_miou": [i < miou_classes(self.protocol) for i in range(len(self.names))]})


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def scores(cm19: np.ndarray, protocol: str = "flair1") -> Scores:
    """IoU, F1, precision, recall per class, mIoU (nanmean over the protocol's mIoU classes) and OA."""
    cm = view(np.asarray(cm19, dtype=np.int64), protocol)
    tp = np.diag(cm).astype(np.float64)
    truth_n, pred_n = cm.sum(axis=1), cm.sum(axis=0)
    fp, fn = pred_n - tp, truth_n - tp
    iou = _ratio(tp, tp + fp + fn)
    k = miou_classes(protocol)
    names = classes.protocol_names(protocol)
    with np.errstate(invalid="ignore"):
        miou = float(np.nanmean(iou[:k])) if np.isfinite(iou[:k]).any() else float("nan")
    total = cm.sum()
    return Scores(protocol=protocol, names=names, matrix=cm, iou=iou, f1=_ratio(2 * tp, 2 * tp + fp + fn),
                  precision=_ratio(tp, pred_n), recall=_ratio(tp, truth_n), miou=miou,
                  oa=float(tp.sum() / total) if total else float("nan"),
                  undefined_in_miou=[names[i] for i in range(k) if np.isnan(iou[i])])


def normalise(cm: np.ndarray, how: str) -> np.ndarray:
    """``counts``, ``recall`` (rows sum to 1) or ``precision`` (columns sum to 1); empty rows/columns are NaN."""
    cm = np.asarray(cm, dtype=np.float64)
    if how == "counts":
        return cm
    if how == "recall":
        return _ratio(cm, np.broadcast_to(cm.sum(axis=1, keepdims=True), cm.shape))
    if how == "precision":
        return _ratio(cm, np.broadcast_to(cm.sum(axis=0, keepdims=True), cm.shape))
    raise FlairVizError(f"Unknown normalisation {how!r}", "use counts, recall or precision")


# --------------------------------------------------------------------------------------------
# Filters, comparisons and click-through, all on stored matrices
# --------------------------------------------------------------------------------------------
def filter_mask(table: MetricsTable, domains: Iterable[str] | None = None, zones: Iterable[str] | None = None,
                date_range: tuple[object, object] | None = None, patches: Iterable[str] | None = None,
                models: Iterable[str] | None = None) -> np.ndarray:
    """Rows matching every given filter (``None`` or empty = no filter on that field)."""
    meta = table.meta
    mask = np.ones(len(meta), dtype=bool)
    for col, wanted in (("domain", domains), ("zone", zones), ("patch", patches), ("model", models)):
        if wanted:
            mask &= meta[col].isin(list(wanted)).to_numpy()
    if date_range is not None:
        lo, hi = (pd.Timestamp(d) if d is not None else None for d in date_range)
        dates = table.dates
        if lo is not None:
            mask &= (dates >= lo).to_numpy(dtype=bool, na_value=False)
        if hi is not None:
            mask &= (dates <= hi).to_numpy(dtype=bool, na_value=False)
    return mask


def compare_models(table: MetricsTable, model_a: str, model_b: str, protocol: str = "flair1",
                   mask: np.ndarray | None = None) -> tuple[pd.DataFrame, Scores, Scores, list[str]]:
    """Per-class IoU/F1 of A and B and the delta B − A, on the patches *both* models predicted.

    Restricting to common patches keeps the comparison fair: otherwise a model scored on easier
    patches would look better. Returns the table, both scores and the common patches.
    """
    sel = np.ones(len(table), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    models = table.meta["model"].to_numpy()
    patches = table.meta["patch"].to_numpy()
    common = sorted(set(patches[sel & (models == model_a)]) & set(patches[sel & (models == model_b)]))
    in_common = np.isin(patches, common)
    a = scores(table.total(sel & in_common & (models == model_a)), protocol)
    b = scores(table.total(sel & in_common & (models == model_b)), protocol)
    df = pd.DataFrame({"class": a.names, f"iou_{model_a}": a.iou, f"iou_{model_b}": b.iou, "iou_delta": b.iou - a.iou,
                       f"f1_{model_a}": a.f1, f"f1_{model_b}": b.f1, "f1_delta": b.f1 - a.f1})
    return df, a, b, common


def rank_patches(table: MetricsTable, truth_class: int, pred_class: int, protocol: str = "flair1",
                 mask: np.ndarray | None = None) -> pd.DataFrame:
    """Patches where ``truth_class`` was predicted as ``pred_class`` (1-based classes of the view), most pixels first."""
    k = len(protocol_members(protocol))
    if not (1 <= truth_class <= k and 1 <= pred_class <= k):
        raise FlairVizError(f"Class {truth_class}->{pred_class} is outside the {protocol} view (1..{k})",
                            "pick a cell of the confusion matrix")
    sel = np.ones(len(table), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    sub = table.select(sel)
    if not len(sub):
        return pd.DataFrame(columns=["patch", "model", "domain", "zone", "date", "pixels", "share_of_truth",
                                     "truth_id", "pred_id"])
    v = view(sub.matrices, protocol)
    pixels = v[:, truth_class - 1, pred_class - 1]
    truth_px = v[:, truth_class - 1, :].sum(axis=1)
    df = sub.meta[["patch", "model", "domain", "zone", "date", "truth_id", "pred_id"]].copy()
    df["pixels"] = pixels
    df["share_of_truth"] = _ratio(pixels.astype(np.float64), truth_px)
    df = df[df["pixels"] > 0].sort_values(["pixels", "patch"], ascending=[False, True]).reset_index(drop=True)
    return df[["patch", "model", "domain", "zone", "date", "pixels", "share_of_truth", "truth_id", "pred_id"]]


def summary(sc: Scores) -> dict:
    """A JSON-ready summary (the CLI's ``--json``): per-class IoU, mIoU, OA, matrix rows=truth, cols=prediction."""
    def num(x: float) -> float | None:
        return None if np.isnan(x) else round(float(x), 6)

    return {"protocol": sc.protocol, "classes": sc.names, "miou": num(sc.miou),
            "miou_classes": sc.names[: miou_classes(sc.protocol)], "undefined_in_miou": sc.undefined_in_miou,
            "overall_accuracy": num(sc.oa), "iou": {n: num(v) for n, v in zip(sc.names, sc.iou)},
            "f1": {n: num(v) for n, v in zip(sc.names, sc.f1)},
            "confusion_matrix": {"rows": "truth", "columns": "prediction", "values": sc.matrix.tolist()}}


def default_store() -> Path:
    """Where the app keeps its metrics: ``$FLAIR_VIZ_METRICS`` or ``<user data>/metrics.parquet``."""
    from flair_viz.core import config

    return Path(os.environ.get("FLAIR_VIZ_METRICS") or config.user_data_dir() / "metrics.parquet")


def top_confusions(cm: np.ndarray, n: int = 10) -> list[tuple[int, int, int]]:
    """The ``n`` largest off-diagonal cells as (truth class, predicted class, pixels), 1-based: the worst confusions."""
    cm = np.asarray(cm)
    off = cm.astype(np.int64).copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(off, axis=None, kind="stable")[::-1][:n]
    return [(int(i // cm.shape[1]) + 1, int(i % cm.shape[1]) + 1, int(off.flat[i])) for i in order if off.flat[i] > 0]
