"""The metrics store: one Parquet row per truth/prediction pair, metadata plus 361 count columns.

Each row carries the *input key* of its pair (both files' stamp and nomenclature), so a later run
reuses a row only when the very same files are compared again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from flair_viz.core import atomic, config
from flair_viz.core.errors import InvalidInput, Misconfigured, RasterNotFound, Unreadable, first_line
from flair_viz.core.stamps import file_stamp
from flair_viz.metrics.confusion import N
from flair_viz.metrics.pairs import Pair

COUNT_COLUMNS: tuple[str, ...] = tuple(f"t{t:02d}_p{p:02d}" for t in range(1, N + 1) for p in range(1, N + 1))
KEY_COLUMNS = ("truth_path", "truth_mtime_ns", "truth_size", "truth_nomenclature",
               "pred_path", "pred_mtime_ns", "pred_size", "pred_nomenclature")
META_COLUMNS = ("patch", "domain", "zone", "date", "minx", "miny", "maxx", "maxy", "model", "truth_id", "pred_id",
                *KEY_COLUMNS, "ignored")
FOLDER_FIX = "give a file name, e.g. metrics.parquet"


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

    @classmethod
    def from_rows(cls, rows: list[tuple[dict, np.ndarray]]) -> MetricsTable:
        """A table of ``(meta, matrix)`` rows, in their order."""
        return cls(pd.DataFrame([m for m, _ in rows], columns=list(META_COLUMNS)),
                   np.stack([c for _, c in rows]) if rows else np.zeros((0, N, N), np.int64))

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

    def merged_with(self, newer: MetricsTable) -> MetricsTable:
        """This table's rows of other pairs, then ``newer`` (one row per truth/prediction file pair)."""
        mine = set(zip(newer.meta["truth_path"], newer.meta["pred_path"]))
        keep = np.array([(t, p) not in mine for t, p in zip(self.meta["truth_path"], self.meta["pred_path"])],
                        dtype=bool)
        others = self.select(keep) if len(self) else self
        if not len(others):
            return newer
        return MetricsTable(pd.concat([others.meta, newer.meta], ignore_index=True),
                            np.concatenate([others.matrices, newer.matrices]))

    def to_frame(self) -> pd.DataFrame:
        counts = pd.DataFrame(self.matrices.reshape(len(self), N * N), columns=list(COUNT_COLUMNS), dtype=np.int64)
        return pd.concat([self.meta.reset_index(drop=True), counts], axis=1)

    @classmethod
    def from_frame(cls, df: pd.DataFrame) -> MetricsTable:
        missing = [c for c in (*META_COLUMNS, *COUNT_COLUMNS) if c not in df.columns]
        if missing:
            raise Unreadable(f"The metrics file lacks columns {missing[:5]}{' …' if len(missing) > 5 else ''}",
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
            raise Unreadable(f"Cannot read the metrics file {path}: {first_line(exc)}",
                             "delete it (it will be recomputed) or give another --out") from None
        return cls.from_frame(df)

    def write(self, path: str | os.PathLike[str]) -> Path:
        path = Path(path)
        check_store_path(path)
        try:
            with atomic.atomic_path(path) as tmp:
                self.to_frame().to_parquet(tmp, index=False)
        except OSError as exc:
            raise Misconfigured(f"Cannot write the metrics file {path}: {exc.strerror or exc}",
                                "choose a writable location with --out (or $FLAIR_VIZ_METRICS)") from None
        return path


def check_store_path(path: str | os.PathLike[str]) -> None:
    """A store is a file: refuse a folder before any work is done."""
    if Path(path).is_dir():
        raise InvalidInput(f"The metrics output {path} is a folder", FOLDER_FIX)


def input_key(pair: Pair) -> dict:
    """What identifies a computed pair: both files' stamp (path, mtime, size) and their nomenclatures."""
    key = {}
    for side, path, nom in (("truth", pair.truth, pair.truth_nomenclature), ("pred", pair.pred, pair.pred_nomenclature)):
        try:
            stamp = file_stamp(path)
        except FileNotFoundError:
            raise RasterNotFound(f"Patch {pair.patch}: {side} file not found: {path}",
                                 "check the path, or rescan the catalog if the file moved") from None
        key |= {f"{side}_path": stamp["path"], f"{side}_mtime_ns": stamp["mtime_ns"],
                f"{side}_size": stamp["size"], f"{side}_nomenclature": nom}
    return key


def default_store() -> Path:
    """Where the app keeps its metrics: ``$FLAIR_VIZ_METRICS`` or ``<user data>/metrics.parquet``."""
    return config.settings().metrics or config.user_data_dir() / "metrics.parquet"
