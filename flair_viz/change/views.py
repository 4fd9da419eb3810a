"""What the Change page shows of a result, as plain data: the from-to view, the main flows, the totals.

Decided here rather than in the page so the figures the page draws are testable without Streamlit,
and the page keeps only widgets and charts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from flair_viz.change.compute import ChangeResult
from flair_viz.core import classes

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
