"""Change of many before/after pairs on Dask: one folder per pair and one table of all."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from flair_viz.change import outputs
from flair_viz.change.align import ClassSource, resolve
from flair_viz.change.compute import compute_change
from flair_viz.change.grouping import load_grouping
from flair_viz.core import atomic, errors
from flair_viz.core.catalog import Catalog
from flair_viz.core.errors import InvalidInput, NotFound
from flair_viz.core.jobs import (
    DEFAULT_RETRIES,
    Call,
    announce,
    gather,
    guard,
    is_complete,
    raise_failures,
    task_key,
    write_manifest,
)
from flair_viz.core.names import safe_name
from flair_viz.core.stamps import file_stamp

if TYPE_CHECKING:
    from distributed import Client


# ----------------------------------------------------------------------------------------------
# Change
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChangeJob:
    """One before/after pair of a batch change, resolved on the client (catalog IDs become files)."""

    name: str
    before: ClassSource
    after: ClassSource


CHANGE_COLUMNS = ("name", "before", "after", "before_path", "after_path", "simulated", "resampled", "partial_overlap",
                  "pixel_area_m2", "overlap_area_ha", "valid_area_ha", "changed_area_ha", "artificialisation_ha",
                  "deartificialisation_ha", "net_artificialisation_ha", "out_dir")


def read_pairs_csv(path: str | os.PathLike[str], catalog: Catalog | None = None,
                   nomenclature: str = "flair1") -> list[ChangeJob]:
    """``before,after[,name]`` rows (catalog IDs or files) -> jobs with unique names."""
    import csv

    path = Path(path)
    if not path.is_file():
        raise NotFound(f"Pairs file not found: {path}", "give a CSV with columns before,after (and optional name)")
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or not {"before", "after"} <= set(rows[0]):
        raise InvalidInput(f"{path.name} must have a header with columns before,after (optional: name)",
                           "e.g. `before,after,name` then one line per pair")
    jobs: list[ChangeJob] = []
    seen: set[str] = set()
    base = path.parent
    for n, row in enumerate(rows, start=2):
        refs = []
        for side in ("before", "after"):
            ref = (row.get(side) or "").strip()
            if not ref:
                raise InvalidInput(f"{path.name} line {n}: empty {side}", "give a catalog ID or a file on every line")
            if not (catalog is not None and ref in catalog) and not Path(ref).is_absolute() and (base / ref).exists():
                ref = str(base / ref)  # files are relative to the CSV, like a catalog's paths
            with errors.context(f"{path.name} line {n}"):
                refs.append(resolve(ref, catalog, nomenclature))
        name = safe_name((row.get("name") or "").strip() or f"{refs[0].name}__{refs[1].name}")
        if name in seen:
            raise InvalidInput(f"{path.name} line {n}: pair name {name!r} is used twice",
                               "give each pair a unique name column (it names its output folder)")
        seen.add(name)
        jobs.append(ChangeJob(name, refs[0], refs[1]))
    return jobs


def _change_inputs(job: ChangeJob, grouping_text: str) -> dict[str, Any]:
    return {"before": file_stamp(job.before.path) | {"nomenclature": job.before.nomenclature},
            "after": file_stamp(job.after.path) | {"nomenclature": job.after.nomenclature},
            "grouping_sha256": hashlib.sha256(grouping_text.encode()).hexdigest()}


def _change_row(job: ChangeJob, summary: dict[str, Any], out: Path) -> dict[str, Any]:
    """One table row from a pair's summary.json, so fresh and reused pairs give identical rows."""
    return {"name": job.name, "before": job.before.name, "after": job.after.name,
            "before_path": str(job.before.path), "after_path": str(job.after.path),
            "simulated": bool(summary["simulated"]), "resampled": bool(summary["alignment"]["resampled"]),
            "partial_overlap": bool(summary["alignment"]["partial_overlap"]),
            "pixel_area_m2": float(summary["grid"]["pixel_area_m2"]),
            "overlap_area_ha": float(summary["overlap_area_ha"]), "valid_area_ha": float(summary["valid_area_ha"]),
            "changed_area_ha": float(summary["changed_area_ha"]), **{k: float(v) for k, v in summary["zan"].items()},
            "out_dir": str(out)}


def change_pair(job: ChangeJob, out_dir: Path, grouping: str | None) -> dict[str, Any]:
    """Worker task: the single-pair change outputs (change.tif, from_to.csv, summary.json), then a manifest."""
    grp = load_grouping(grouping)
    out = out_dir / job.name
    inputs = _change_inputs(job, grp.text)
    atomic.sweep(out, {"change.tif", "from_to.csv", "summary.json"})  # a killed earlier attempt's work files
    result = compute_change(job.before, job.after, grouping=grp, change_cog=out / "change.tif")
    outputs.write_outputs(out, result)
    summary = out / "summary.json"
    write_manifest(summary, inputs, [out / "change.tif", out / "from_to.csv", summary])
    return _change_row(job, json.loads(summary.read_text(encoding="utf-8")), out)


def batch_change(pairs: Sequence[ChangeJob], out_dir: str | os.PathLike[str], client: Client,
                 grouping: str | None = None, retries: int = DEFAULT_RETRIES, progress: bool = True) -> pd.DataFrame:
    """Each pair's change outputs in ``out_dir/<name>/``, and one table of all pairs (``changes.parquet``/``.csv``).

    A pair whose outputs are complete for the same input files and grouping is not recomputed.
    """
    out_dir = atomic.output_folder(out_dir)
    if not pairs:
        raise InvalidInput("No pairs to compare", "give --pairs pairs.csv with columns before,after[,name]")
    grp = load_grouping(grouping)
    rows: dict[str, dict[str, Any]] = {}
    todo = []
    for job in pairs:
        out = out_dir / job.name
        summary = out / "summary.json"
        if is_complete(summary, _change_inputs(job, grp.text), [out / "change.tif", out / "from_to.csv", summary]):
            rows[job.name] = _change_row(job, json.loads(summary.read_text(encoding="utf-8")), out)
        else:
            todo.append(job)
    if progress:
        print(f"{len(pairs)} pair(s): {len(rows)} already done, {len(todo)} to compute", file=sys.stderr)
        if todo:
            announce(client, progress)
    futures = {client.submit(guard, j.name, Call(change_pair, j, out_dir, grouping), key=task_key("change", j.name),
                             retries=retries, pure=False): j.name for j in todo}
    outcomes = gather(client, futures, "change", progress)
    for o in outcomes:
        if o.ok:
            rows[o.name] = o.value
    table = pd.DataFrame([rows[j.name] for j in pairs if j.name in rows], columns=list(CHANGE_COLUMNS))
    atomic.sweep(out_dir, {"changes.parquet", "changes.csv"})
    if len(table):
        with atomic.atomic_path(out_dir / "changes.parquet") as tmp:
            table.to_parquet(tmp, index=False)
        with atomic.atomic_path(out_dir / "changes.csv") as tmp:
            table.to_csv(tmp, index=False, float_format="%.17g")
    raise_failures([o for o in outcomes if not o.ok], len(pairs), "pair(s)")
    return table
