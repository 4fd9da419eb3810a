"""What the Change page shows of a result, as plain data: the from-to view, the main flows, the totals,
and which change-from-predictions run the page's choices stand for.

Decided here rather than in the page so the figures the page draws are testable without Streamlit,
and the page keeps only widgets and charts.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from flair_viz.change.compute import ChangeResult
from flair_viz.core import classes, config
from flair_viz.core.catalog import Dataset

NAMES = [c.name for c in classes.FLAIR1_CLASSES]


def present_classes(result: ChangeResult) -> list[int]:
    """0-based indices of the classes with any area at either date (the rest would be empty rows)."""
    ft = result.from_to_ha()
    return [i for i in range(len(NAMES)) if ft[i, :].sum() > 0 or ft[:, i].sum() > 0]


def from_to_view(result: ChangeResult, hide_diagonal: bool = True) -> tuple[list[str], np.ndarray]:
    """Names and hectares of the present classes, rows = before; the diagonal (unchanged land) zeroed on request."""
    shown = result.from_to_ha().copy()
    if hide_diagonal:
        np.fill_diagonal(shown, 0)
    present = present_classes(result)
    return [NAMES[i] for i in present], shown[np.ix_(present, present)]


def changed_to(result: ChangeResult) -> list[int]:
    """FLAIR-1 values that changed pixels became: the classes the ``class`` change layer shows."""
    return sorted({a for _, a, _ in result.top_flows(len(NAMES) ** 2)})


@dataclass(frozen=True)
class Flows:
    """The largest class changes as a Sankey diagram's nodes and links; ``flow`` is each link's ZAN flow code."""

    labels: list[str]
    colors: list[str]
    source: list[int]
    target: list[int]
    hectares: list[float]
    flow: list[int]


def main_flows(result: ChangeResult, before_label: str, after_label: str, n: int = 12) -> Flows | None:
    """The ``n`` largest changes, before classes on the left and after classes on the right; None if nothing changed."""
    flows = result.top_flows(n)
    if not flows:
        return None
    group = result.grouping.flow_matrix()
    src_vals = sorted({b for b, _, _ in flows})
    dst_vals = sorted({a for _, a, _ in flows})
    labels = [f"{classes.BY_VALUE[v].name} ({before_label})" for v in src_vals] + \
             [f"{classes.BY_VALUE[v].name} ({after_label})" for v in dst_vals]
    return Flows(labels=labels, colors=[classes.BY_VALUE[v].color for v in src_vals + dst_vals],
                 source=[src_vals.index(b) for b, _, _ in flows],
                 target=[len(src_vals) + dst_vals.index(a) for _, a, _ in flows],
                 hectares=[ha for _, _, ha in flows], flow=[int(group[b, a]) for b, a, _ in flows])


def totals_table(result: ChangeResult) -> pd.DataFrame:
    """Hectares of each present class before and after, and the net change."""
    table = pd.DataFrame({"class": NAMES, "before (ha)": result.totals_before_ha(),
                          "after (ha)": result.totals_after_ha(), "net change (ha)": result.net_change_ha()})
    return table.iloc[present_classes(result)]


def grouping_lines(result: ChangeResult) -> dict[str, str]:
    """Each ZAN group's class names, as the page lists them ("—" for an empty group)."""
    return {g: ", ".join(classes.BY_KEY[k].name for k in keys) or "—" for g, keys in result.grouping.groups.items()}


# -- change from predictions -----------------------------------------------------------------------
DEFAULT_IMAGES = ("IMG_000473", "IMG_000473_SIM2024")  # the demo pair: a real image and its simulated later vintage


def default_images(ids: list[str]) -> tuple[int, int]:
    """Indices of the images the page offers first: the demo pair when the catalog has it, else the first two."""
    a = ids.index(DEFAULT_IMAGES[0]) if DEFAULT_IMAGES[0] in ids else 0
    b = ids.index(DEFAULT_IMAGES[1]) if DEFAULT_IMAGES[1] in ids else min(1, len(ids) - 1)
    return a, b


def model_labels(cards: list[dict], fallback: str | None = None) -> dict[str, str]:
    """Model ID -> the label the page shows (the demo flag named), from the tile server's model list.

    With no list (server not up yet), the first local card, the default one, so the page still offers it."""
    if not cards:
        from flair_viz.predict.cards import list_cards

        local = list_cards()
        first = fallback or (local[0].id if local else "")
        return {first: first} if first else {}
    return {c["id"]: c["id"] + (" (DEMO)" if c.get("demo") else "") for c in cards}


@dataclass(frozen=True)
class PredictionsRun:
    """Change between one model's predictions of two images at one margin threshold: the ``flair-viz``
    command that computes it and the folder it writes, one folder per choice, so a result already on
    disk is shown at once and moving the threshold back costs nothing."""

    argv: tuple[str, ...]
    out: Path

    @property
    def command(self) -> str:
        """The same computation from a shell (quoted: catalog paths may hold spaces)."""
        return shlex.join(("flair-viz", *self.argv))

    def done(self) -> bool:
        return (self.out / "uncertainty.json").exists()

    def figures(self) -> tuple[dict, dict]:
        """``uncertainty.json`` and ``summary.json``, as the command wrote them."""
        return tuple(json.loads((self.out / n).read_text(encoding="utf-8")) for n in ("uncertainty.json",
                                                                                       "summary.json"))


def predictions_run(model: str, before: Dataset, after: Dataset, threshold: float,
                    catalog: str | Path) -> PredictionsRun:
    """The run the page's choices stand for; its folder is keyed by the model, both image files, the
    threshold (to the 4 decimals the command gets) and the catalog."""
    key = hashlib.sha256(f"{model}|{before.path}|{after.path}|{threshold:.4f}|{catalog}".encode()).hexdigest()[:16]
    out = config.user_data_dir() / "change" / "from_predictions" / key
    argv = ("change", "--model", model, before.id, after.id, "--out", str(out), "--margin-threshold",
            f"{threshold:.4f}", "--catalog", str(catalog))
    return PredictionsRun(argv=argv, out=out)
