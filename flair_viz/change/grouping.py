"""The ZAN grouping: which FLAIR-1 classes are artificial, natural or neutral, and the flows between them.

People argue about the grouping (is a pervious surface artificial? a clear cut natural?), so it is a
TOML file (default: ``flair_viz/change/zan_grouping.toml``) whose path and text travel with every
result, and every class must land in exactly one group.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flair_viz.core import classes
from flair_viz.core.errors import Misconfigured, NotFound

DEFAULT_GROUPING_PATH = Path(__file__).with_name("zan_grouping.toml")
GROUPS = ("artificial", "natural", "neutral")
N = classes.N_CLASSES + 1  # class codes 0..19, 0 = nodata

# Flow groups of the change layer, coloured as the issue asks (RGBA).
FLOW_ARTIFICIALISATION = 1
FLOW_DEARTIFICIALISATION = 2
FLOW_OTHER = 3
FLOW_COLORS: dict[int, tuple[int, int, int, int]] = {
    FLOW_ARTIFICIALISATION: (228, 26, 28, 255),  # red
    FLOW_DEARTIFICIALISATION: (46, 160, 67, 255),  # green
    FLOW_OTHER: (150, 150, 150, 255),  # grey
}
FLOW_NAMES = {FLOW_ARTIFICIALISATION: "artificialisation", FLOW_DEARTIFICIALISATION: "de-artificialisation",
              FLOW_OTHER: "other change"}


@dataclass(frozen=True)
class ZanGrouping:
    """Which FLAIR-1 class keys are artificial, natural or neutral, and the file that said so."""

    groups: dict[str, tuple[str, ...]]
    source: str
    text: str

    def group_of(self) -> dict[int, str]:
        """FLAIR-1 value -> group name."""
        return {classes.BY_KEY[k].value: g for g, keys in self.groups.items() for k in keys}

    def flow_matrix(self) -> np.ndarray:
        """(N, N) flow code for each (before, after) class pair; 0 for unchanged or nodata."""
        grp = self.group_of()
        flows = np.zeros((N, N), dtype=np.uint8)
        for b in range(1, N):
            for a in range(1, N):
                if a == b:
                    continue
                if grp[b] == "natural" and grp[a] == "artificial":
                    flows[b, a] = FLOW_ARTIFICIALISATION
                elif grp[b] == "artificial" and grp[a] == "natural":
                    flows[b, a] = FLOW_DEARTIFICIALISATION
                else:
                    flows[b, a] = FLOW_OTHER
        return flows

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "groups": {g: list(k) for g, k in self.groups.items()}, "content": self.text}


def load_grouping(path: str | os.PathLike[str] | None = None) -> ZanGrouping:
    """Read a grouping TOML; every class must land in exactly one group, or the error lists which."""
    p = Path(path) if path else DEFAULT_GROUPING_PATH
    fix = f"copy {DEFAULT_GROUPING_PATH} and edit it: [groups] with lists artificial, natural, neutral of class keys"
    if not p.is_file():
        raise NotFound(f"Grouping file not found: {p}", fix)
    text = p.read_text(encoding="utf-8")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise Misconfigured(f"Grouping file {p.name} is not valid TOML: {exc}", fix) from None
    raw = doc.get("groups")
    if not isinstance(raw, dict) or not raw:
        raise Misconfigured(f"Grouping file {p.name} has no [groups] table", fix)
    unknown_groups = set(raw) - set(GROUPS)
    if unknown_groups:
        raise Misconfigured(f"Grouping file {p.name} has unknown groups {sorted(unknown_groups)}",
                            f"use only {', '.join(GROUPS)}")
    seen: dict[str, str] = {}
    groups: dict[str, tuple[str, ...]] = {}
    for g, keys in raw.items():
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise Misconfigured(f"Grouping file {p.name}: group {g!r} must be a list of class keys", fix)
        bad = [k for k in keys if k not in classes.BY_KEY]
        if bad:
            raise Misconfigured(f"Grouping file {p.name}: unknown class keys {bad} in {g!r}",
                                f"use keys from the class table: {', '.join(classes.BY_KEY)}")
        dup = [k for k in keys if k in seen]
        if dup:
            raise Misconfigured(f"Grouping file {p.name}: {dup} appear in more than one group", "list each class once")
        seen.update({k: g for k in keys})
        groups[g] = tuple(keys)
    rest = tuple(k for k in classes.BY_KEY if k not in seen)
    missing_groups = [g for g in GROUPS if g not in groups]
    if rest and len(missing_groups) == 1:
        groups[missing_groups[0]] = rest
    elif rest:
        raise Misconfigured(f"Grouping file {p.name} leaves classes {list(rest)} in no group", fix)
    for g in GROUPS:
        groups.setdefault(g, ())
    return ZanGrouping(groups={g: groups[g] for g in GROUPS}, source=str(p), text=text)


def zan_flows(counts: np.ndarray, grouping: ZanGrouping, ha_per_pixel: float) -> dict[str, float]:
    """Hectares natural -> artificial, artificial -> natural, and their difference."""
    flows = grouping.flow_matrix()
    art = float(counts[flows == FLOW_ARTIFICIALISATION].sum() * ha_per_pixel)
    deart = float(counts[flows == FLOW_DEARTIFICIALISATION].sum() * ha_per_pixel)
    return {"artificialisation_ha": art, "deartificialisation_ha": deart, "net_artificialisation_ha": art - deart}
