"""A series of N vintages of one area: the change of every interval, ZAN flows per interval and cumulated.

ZAN is counted over time (flows per year since 2021 against a reference decade), so an analyst needs
more than two dates. A trend is nothing but the consecutive pairwise changes: each interval is
:func:`flair_viz.change.compute.compute_change` of (V_i, V_i+1), so its figures are exactly those of
``flair-viz change V_i V_i+1`` and the intervals add up to the pairwise commands by construction. The
grouping and the regions are read once for the whole series.

The series is checked before any pixel is counted: at least two dates, no two of the same date, every
nomenclature mapped to FLAIR-1, every vintage overlapping the first. Each interval says what each end
is (truth, prediction, SIMULATED or a plain file), because a series may mix them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from flair_viz.change.align import ClassSource, align, resolve
from flair_viz.change.compute import DEFAULT_BLOCK, ChangeResult, compute_change
from flair_viz.change.grouping import ZanGrouping, load_grouping
from flair_viz.change.regions import Regions, load_regions
from flair_viz.core import classes, errors
from flair_viz.core.catalog import Catalog, Dataset
from flair_viz.core.errors import InvalidInput, Misconfigured

ALL = "(all)"
TREND_COLUMNS = ("interval", "label", "before", "after", "before_vintage", "after_vintage", "before_source",
                 "after_source", "simulated", "region", "region_id", "area_ha", "changed_ha", "artificialisation_ha",
                 "deartificialisation_ha", "net_artificialisation_ha", "cumulative_net_ha")
Ref = str | os.PathLike[str] | Dataset | ClassSource


@dataclass
class Trend:
    """The vintages of a series (date order) and the change of each consecutive interval."""

    sources: list[ClassSource]
    intervals: list[ChangeResult]
    grouping: ZanGrouping
    regions: Regions | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def simulated(self) -> bool:
        return any(s.simulated for s in self.sources)

    def labels(self) -> list[str]:
        """``2016→2019`` style names of the intervals (dataset names where a date is unknown)."""
        return [interval_label(r.before, r.after) for r in self.intervals]

    def table(self) -> pd.DataFrame:
        """One row per interval for the whole area (region ``(all)``, ``region_id`` -1) and, with regions, one
        per region (``region_id`` 1..n, 0 = outside every region) and interval; ``cumulative_net_ha`` runs
        over the intervals of each region."""
        rows: list[dict[str, Any]] = []
        cumulative: dict[int, float] = {}
        for i, (res, label) in enumerate(zip(self.intervals, self.labels()), start=1):
            z = res.zan()
            whole = {"region": ALL, "region_id": -1, "area_ha": res.valid_area_ha(), "changed_ha": res.changed_area_ha(), **z}
            parts = [whole] + [{"region": r["name"], "region_id": r["region"], "area_ha": r["area_ha"], "changed_ha": r["changed_ha"],
                                **{k: r[k] for k in z}} for r in res.region_table()]
            for part in parts:
                key = part["region_id"]
                cumulative[key] = cumulative.get(key, 0.0) + part["net_artificialisation_ha"]
                rows.append({"interval": i, "label": label, "before": res.before.name, "after": res.after.name,
                             "before_vintage": res.before.vintage or "", "after_vintage": res.after.vintage or "",
                             "before_source": res.before.kind, "after_source": res.after.kind,
                             "simulated": res.simulated, **part, "cumulative_net_ha": cumulative[key]})
        return pd.DataFrame(rows, columns=list(TREND_COLUMNS))

    def summary(self) -> dict[str, Any]:
        return {"vintages": [s.as_dict() for s in self.sources], "intervals": self.labels(),
                "simulated": self.simulated, "notes": self.notes, "grouping": self.grouping.as_dict(),
                "interval_outputs": [r.outputs for r in self.intervals]}


def interval_label(before: ClassSource, after: ClassSource) -> str:
    return f"{before.vintage or before.name}→{after.vintage or after.name}"


def check_series(sources: Sequence[ClassSource]) -> tuple[list[ClassSource], list[str]]:
    """The vintages in date order, or a clear error: fewer than two, two of one date, an unmapped
    nomenclature, or a vintage of another place."""
    notes: list[str] = []
    if len(sources) < 2:
        raise InvalidInput(f"A series needs at least two vintages, got {len(sources)}",
                           "give two or more class rasters of the same area at different dates")
    names = [s.name for s in sources]
    if len(set(names)) < len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise InvalidInput(f"The series lists {', '.join(dup)} more than once", "give each vintage once")
    dated = [s for s in sources if s.vintage]
    by_date: dict[str, list[str]] = {}
    for s in dated:
        by_date.setdefault(s.vintage, []).append(s.name)
    same = {d: n for d, n in by_date.items() if len(n) > 1}
    if same:
        d, n = next(iter(same.items()))
        raise InvalidInput(f"Two vintages of the series have the same date {d}: {' and '.join(n)}",
                           "keep one raster per date (drop one, or correct its vintage in the catalog)")
    ordered = list(sources)
    if len(dated) == len(sources):
        ordered = sorted(sources, key=lambda s: s.vintage)
        if ordered != list(sources):
            notes.append("vintages were put in date order: " + ", ".join(f"{s.name} ({s.vintage})" for s in ordered))
    else:
        notes.append("some vintages have no date (plain files): the series is taken in the order given")
    known = classes.nomenclature_names()
    unmapped = sorted({s.nomenclature for s in sources if s.nomenclature not in known})
    if unmapped:
        used = sorted({s.nomenclature for s in sources})
        raise Misconfigured(f"The series mixes nomenclatures {', '.join(used)}; {', '.join(unmapped)} has no mapping "
                            "to FLAIR-1, so its classes cannot be compared with the others",
                            f"convert those rasters to FLAIR-1 values, or declare a nomenclature that has a mapping "
                            f"(one of {', '.join(known)}; mapping files like flair_viz/core/odeon_nomenclature.toml)")
    for s in ordered[1:]:
        with errors.context(f"series: {ordered[0].name} vs {s.name}"):
            align(ordered[0], s)  # refuses a vintage of another place before anything is counted
    return ordered, notes


def compute_trend(refs: Sequence[Ref], *, catalog: Catalog | None = None,
                  grouping: ZanGrouping | str | os.PathLike[str] | None = None,
                  regions: str | os.PathLike[str] | None = None, region_name_field: str | None = None,
                  cog_dir: str | os.PathLike[str] | None = None, block_size: int = DEFAULT_BLOCK,
                  nomenclature: str = "flair1") -> Trend:
    """The change of each consecutive interval of a series; with ``cog_dir``, each interval's change and
    flow COGs are written to ``cog_dir/<i>_<before>__<after>/``."""
    sources, notes = check_series([resolve(r, catalog, nomenclature) for r in refs])
    grp = grouping if isinstance(grouping, ZanGrouping) else load_grouping(grouping)
    regs_by_crs: dict[str, Regions] = {}
    results: list[ChangeResult] = []
    for i, (b, a) in enumerate(zip(sources, sources[1:]), start=1):
        regs = None
        if regions is not None:
            crs = align(b, a).crs
            regs = regs_by_crs.get(crs.to_string()) or load_regions(regions, crs, region_name_field)
            regs_by_crs[crs.to_string()] = regs
        out = Path(cog_dir) / f"{i}_{b.name}__{a.name}" if cog_dir else None
        results.append(compute_change(b, a, grouping=grp, regions=regs, block_size=block_size,
                                      change_cog=out / "change.tif" if out else None,
                                      flow_cog=out / "flow.tif" if out else None))
    first_regions = next(iter(regs_by_crs.values()), None)
    notes += list(first_regions.notes) if first_regions else []  # repaired geometries, reprojection
    return Trend(sources=sources, intervals=results, grouping=grp, regions=first_regions, notes=notes)


def catalog_series(catalog: Catalog, name: str) -> list[Dataset]:
    """The class rasters of a named catalog series, in date order, or an error listing the series."""
    members = [d for d in catalog.series(name) if d.role in ("truth", "prediction")]
    if not members:
        known = ", ".join(catalog.series_names()) or "(none yet: add series = NAME to the vintages' entries)"
        raise InvalidInput(f"The catalog has no series {name!r}", f"use one of {known}")
    return members
