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
from flair_viz.change.masks import MaskAgreement
from flair_viz.core import classes, config, raster
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


# -- tables in plain words ---------------------------------------------------------------------------
SOURCE_WORDS = {"truth": "ground truth", "prediction": "prediction", "simulated": "SIMULATED ground truth"}
TREND_COLUMNS = {"label": "Interval", "before_source": "Before is", "after_source": "After is",
                 "region": "Region", "area_ha": "Area compared (ha)", "changed_ha": "Changed (ha)",
                 "artificialisation_ha": "Artificialisation (ha)", "deartificialisation_ha": "De-artificialisation (ha)",
                 "net_artificialisation_ha": "Net artificialisation (ha)",
                 "cumulative_net_ha": "Net since the first vintage (ha)"}
REGION_COLUMNS = {"name": "Region", "area_ha": "Area compared (ha)", "changed_ha": "Changed (ha)",
                  "artificialisation_ha": "Artificialisation (ha)", "deartificialisation_ha": "De-artificialisation (ha)",
                  "net_artificialisation_ha": "Net artificialisation (ha)"}


def trend_table_view(table: pd.DataFrame) -> pd.DataFrame:
    """The series table as the page shows it: plain column names, the internal ones (``region_id``, the
    dataset IDs, ``interval``, the ``simulated`` flag, said in "Before is"/"After is" instead) left out,
    and the region column only when there are regions. ``trend.csv`` keeps every column."""
    shown = table.copy()
    for col in ("before_source", "after_source"):
        shown[col] = shown[col].map(lambda s: SOURCE_WORDS.get(s, s))
    if set(shown["region"]) == {"(all)"}:
        shown = shown.drop(columns="region")
    return shown[[c for c in TREND_COLUMNS if c in shown.columns]].rename(columns=TREND_COLUMNS)


def region_table_view(rows: list[dict]) -> pd.DataFrame:
    """The per-region table in plain words, without the internal region index (``regions.csv`` keeps it)."""
    return pd.DataFrame(rows)[list(REGION_COLUMNS)].rename(columns=REGION_COLUMNS)


# -- the check against real change masks, in words ----------------------------------------------------
@dataclass(frozen=True)
class MaskCheck:
    """What the mask check did (``checked``), what it found in one line (``found``), and one line per mask."""

    checked: str
    found: str
    lines: list[str]


def _gap_km(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Distance between two (left, bottom, right, top) boxes in metres' CRS, in km (0 when they touch)."""
    dx = max(0.0, max(a[0], b[0]) - min(a[2], b[2]))
    dy = max(0.0, max(a[1], b[1]) - min(a[3], b[3]))
    return float(np.hypot(dx, dy)) / 1000


def mask_check(checks: list[MaskAgreement], masks: list[Path], pair_bounds: tuple[float, ...]) -> MaskCheck:
    """The mask check said plainly: which masks, what "agree" means, and for a mask of another place how far
    away it lies (its changed pixels and the pair share no ground, so it neither confirms nor refutes anything).

    ``masks`` are the mask files in the order of ``checks`` (:func:`flair_viz.change.masks.pair_masks`);
    ``pair_bounds`` the before raster's bounds, in the masks' CRS (the check refuses masks in another CRS).
    """
    checked = (f"Checked: of the pixels that {len(checks)} change mask{'s' if len(checks) > 1 else ''} listed for "
               "this pair mark as changed, how many change class between the two vintages here too.")
    lines, elsewhere, agree, valid = [], 0, 0, 0
    for check, path in zip(checks, masks):
        if not check.on_pair_px:
            elsewhere += 1
            km = _gap_km(raster.describe(path).bounds, pair_bounds)
            lines.append(f"{check.mask} covers another place, {km:.1f} km from this pair: none of its "
                         f"{check.changed_px:,} changed pixels lies on this pair, so it can neither confirm nor "
                         "refute this change.")
            continue
        agree, valid = agree + check.counted_px, valid + check.valid_px
        line = (f"{check.mask}: {check.counted_px:,} of its {check.valid_px:,} changed pixels on this pair "
                f"({check.share:.1%})" if check.valid_px else f"{check.mask}: none of its changed pixels on this "
                "pair has a class at both dates, so none") + " change class here too"
        if check.changed_px > check.on_pair_px:
            line += f"; {check.changed_px - check.on_pair_px:,} more lie outside the pair"
        lines.append(line + ".")
    if elsewhere == len(checks):
        found = ("Found: nothing to compare. " + ("The mask covers" if len(checks) == 1 else "Every mask covers")
                 + " another place than this pair.")
    else:
        found = (f"Found: {agree:,} of {valid:,} changed mask pixels on this pair ({agree / valid:.1%}) change class "
                 "here too." if valid else "Found: no changed mask pixel on this pair has a class at both dates.")
    return MaskCheck(checked, found, lines)


# -- change from predictions: every figure with what it means ------------------------------------------
@dataclass(frozen=True)
class Figure:
    """One headline number: its label, its value as shown, and what it means (the metric's help)."""

    label: str
    value: str
    help: str


def _ha(v: float) -> str:
    return f"{v:.4f} ha"


def prediction_figures(u: dict, s: dict) -> list[list[Figure]]:
    """The headline numbers of a change from predictions (``uncertainty.json`` ``u``, ``summary.json`` ``s``),
    in two rows: the changed area split into sure and uncertain, then the ZAN flows with their sure part.

    Each flow is shown as the whole and, apart, its sure part (not one inside the other's brackets), so no
    number needs a legend to be read."""
    t = u["margin_threshold"]
    unsure = (f"Changed pixels where, at either date, the model's most likely class beats the runner-up by less "
              f"than {t:.2f} in probability (top-1 − top-2 < {t:.2f}): the model hesitated, so the change may be "
              "its own error.")
    return [
        [Figure("Area compared", _ha(s["valid_area_ha"]), "Ground both predictions cover with a class."),
         Figure("Changed", _ha(u["changed_ha"]), "Pixels the model puts in a different class at the two dates, "
                "times the pixel area. Changed = sure change + uncertain change."),
         Figure("Sure change", _ha(u["sure_changed_ha"]), "Changed pixels where the model was confident at both "
                f"dates (top-1 − top-2 ≥ {t:.2f}). Red on the map."),
         Figure("Uncertain change", _ha(u["uncertain_changed_ha"]), unsure + " Amber on the map.")],
        [Figure("Artificialisation, all change", _ha(s["zan"]["artificialisation_ha"]),
                "Natural, agricultural or forest land the model saw become artificial (sure and uncertain)."),
         Figure("… of which sure", _ha(u["zan_sure"]["artificialisation_ha"]),
                "The part of the artificialisation where the model was confident at both dates."),
         Figure("De-artificialisation, all change", _ha(s["zan"]["deartificialisation_ha"]),
                "Artificial land the model saw become natural, agricultural or forest (sure and uncertain)."),
         Figure("… of which sure", _ha(u["zan_sure"]["deartificialisation_ha"]),
                "The part of the de-artificialisation where the model was confident at both dates.")],
    ]


def prediction_notes(u: dict, s: dict) -> str:
    """How to read the figures: what a hectare is here, what "uncertain" means, where the numbers come from."""
    g = s["grid"]
    rx, ry = (abs(r) for r in g["resolution_m"])
    return (f"**How to read these numbers.** Hectares are pixels × pixel area: here {rx:.2f} m × {ry:.2f} m = "
            f"{g['pixel_area_m2']:.2f} m² a pixel; 1 ha = 10,000 m² (a 100 m × 100 m square), and the two images "
            f"overlap on {s['overlap_area_ha']:.2f} ha. A change is **uncertain** where, at either date, the "
            f"model's top class leads the runner-up by less than {u['margin_threshold']:.2f} in probability; "
            "**sure** change is the rest. The model's change mixes real change with its own errors: "
            "the uncertain part is where an error is most likely.")
