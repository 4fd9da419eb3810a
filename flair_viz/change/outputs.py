"""The files of one change result: from-to CSV, region CSV and summary JSON, each written atomically.

Used by ``flair-viz change``, the batch job and the Change page's downloads, so the three always
write the same bytes.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from flair_viz.change.compute import ChangeResult
from flair_viz.core import atomic, classes

REGION_COLUMNS = ("region", "name", "area_ha", "changed_ha", "artificialisation_ha", "deartificialisation_ha",
                  "net_artificialisation_ha")


def from_to_csv(result: ChangeResult) -> str:
    """The 19 × 19 matrix as CSV; ``repr`` of floats keeps every digit (well below 1 m²)."""
    names = [c.name for c in classes.FLAIR1_CLASSES]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["before \\ after", *names])
    for name, row in zip(names, result.from_to_ha().tolist()):
        w.writerow([name, *(repr(float(v)) for v in row)])
    return buf.getvalue()


def regions_csv(result: ChangeResult) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=REGION_COLUMNS, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for row in result.region_table():
        w.writerow({k: repr(v) if isinstance(v, float) else v for k, v in row.items()})
    return buf.getvalue()


def write_outputs(result_dir: Path, result: ChangeResult) -> dict[str, str]:
    """Write the tables and summary of a result whose change COG is already in ``result_dir``."""
    outputs = dict(result.outputs)
    outputs["from_to_csv"] = str(atomic.write_text(result_dir / "from_to.csv", from_to_csv(result)))
    if result.regions is not None:
        outputs["regions_csv"] = str(atomic.write_text(result_dir / "regions.csv", regions_csv(result)))
    outputs["summary_json"] = str(result_dir / "summary.json")
    result.outputs = outputs
    atomic.write_text(result_dir / "summary.json", json.dumps(result.summary(), indent=2, ensure_ascii=False) + "\n")
    return outputs
