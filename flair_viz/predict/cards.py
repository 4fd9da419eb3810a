"""Model cards: what a checkpoint is (architecture, bands, normalisation, classes), without torch.

A model is a TOML card plus a checkpoint in ``models/`` or in a folder named by ``$FLAIR_VIZ_MODELS``
(``os.pathsep``-separated). Users add a model by dropping both files there; nothing is downloaded,
ever. Everything here is torch-free, so the UI's model picker and ``flair-viz models list`` stay
instant; :mod:`flair_viz.predict.models` builds and loads the networks.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import os
import re
import threading
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from flair_viz.core import classes, config
from flair_viz.core.errors import InvalidModel, Misconfigured, NotFound, UnknownModel
from flair_viz.core.stamps import file_sha256

ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
BAND_NAMES = ("R", "G", "B", "NIR", "elevation")
CHECKPOINT_SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt")
REQUIRED = ("id", "arch", "encoder", "in_bands", "mean", "std", "classes", "nomenclature")
OPTIONAL = ("title", "checkpoint", "sha256", "licence", "demo", "default", "description", "provenance",
            "arch_params", "training", "scores")
ARCH_FIX = "use an smp class name such as Unet, UnetPlusPlus, FPN, DeepLabV3Plus or Segformer"


@dataclass(frozen=True)
class ModelCard:
    """One model, as declared by its card file."""

    id: str
    arch: str
    encoder: str
    in_bands: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: int
    nomenclature: str
    card_path: Path
    title: str = ""
    checkpoint: Path | None = None
    sha256: str | None = None
    licence: str = ""
    demo: bool = False
    description: str = ""
    provenance: str = ""
    arch_params: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    default: bool = False  # listed first, so every page and script that takes "the first model" takes this one
    scores: dict[str, Any] = field(default_factory=dict)  # the card's own measured scores (e.g. on an unseen zone)

    @property
    def label(self) -> str:
        return f"model card {self.id} ({self.card_path})"

    def output_values(self) -> np.ndarray:
        """FLAIR-1 value (1..19) of each model output channel, so every nomenclature lands in one table."""
        if self.nomenclature == "flair1":
            return np.arange(1, self.classes + 1, dtype=np.uint8)
        return classes.flairhub_to_flair1_lut()[np.arange(self.classes)]

    def to_json(self) -> dict[str, Any]:
        """What the UI and ``/models`` need to show a model honestly (demo flag included)."""
        return {"id": self.id, "title": self.title or self.id, "arch": self.arch, "encoder": self.encoder,
                "in_bands": list(self.in_bands), "classes": self.classes, "nomenclature": self.nomenclature,
                "licence": self.licence, "demo": self.demo, "default": self.default, "scores": self.scores,
                "description": self.description,
                "checkpoint": self.checkpoint.name if self.checkpoint else None, "sha256": self.sha256}


def model_dirs(extra: Sequence[Path] = ()) -> list[Path]:
    """Folders searched for cards: ``$FLAIR_VIZ_MODELS`` entries first, then ``extra`` (a command's
    ``--models-dir``), then the repo's ``models/``, then ``models/`` in the user data folder, where
    ``flair-viz finetune`` writes fine-tuned models."""
    return [*config.settings().models, *map(Path, extra), config.MODELS_DIR, config.user_data_dir() / "models"]


# -- parsing -------------------------------------------------------------------------------------
def _bad(path: Path, field_name: str, problem: str, fix: str) -> InvalidModel:
    return InvalidModel(f"Model card {path}: field `{field_name}` {problem}", fix)


def _floats(path: Path, name: str, value: Any, n: int) -> tuple[float, ...]:
    if not isinstance(value, list) or len(value) != n or not all(isinstance(v, (int, float)) for v in value):
        raise _bad(path, name, f"must be a list of {n} numbers, one per in_band (got {value!r})",
                   f"give {n} numbers in the order of in_bands")
    return tuple(float(v) for v in value)


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise UnknownModel(f"Model card not found: {path}", "give the path of a .toml card or a model ID "
                           "(`flair-viz models list`)")
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InvalidModel(f"Model card {path} is not valid TOML: {exc}", "fix the syntax at that line") from None
    for name in REQUIRED:
        if name not in doc:
            raise _bad(path, name, "is missing", f"add `{name} = ...` (see models/README.md)")
    unknown = sorted(set(doc) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise _bad(path, unknown[0], "is not a card field", f"remove it or fix its spelling; known fields: "
                   f"{', '.join(REQUIRED + OPTIONAL)}")
    return doc


def _check_names(path: Path, doc: dict[str, Any]) -> None:
    if not isinstance(doc["id"], str) or not ID_RE.match(doc["id"]):
        raise _bad(path, "id", f"is not a valid model ID ({doc['id']!r})",
                   "use letters, digits, '_', '-' or '.', starting with a letter or digit (max 64)")
    if not isinstance(doc["arch"], str) or not doc["arch"]:
        raise _bad(path, "arch", "must be a segmentation_models_pytorch architecture name", ARCH_FIX)
    if not isinstance(doc["encoder"], str) or not doc["encoder"]:
        raise _bad(path, "encoder", "must be an smp encoder name", "e.g. resnet34 or tu-resnet18")


def _check_classes(path: Path, doc: dict[str, Any]) -> None:
    nom = doc["nomenclature"]
    if nom not in classes.NOMENCLATURES:
        raise _bad(path, "nomenclature", f"is {nom!r}", f"use one of {', '.join(classes.NOMENCLATURES)}")
    n = doc["classes"]
    limit = classes.N_CLASSES if nom == "flair1" else len(classes.FLAIRHUB_ORDER)
    if not isinstance(n, int) or isinstance(n, bool) or not 2 <= n <= limit:
        raise _bad(path, "classes", f"must be an integer from 2 to {limit} for {nom} (got {n!r})",
                   "give the number of output channels of the segmentation head")


def _check_weights(path: Path, doc: dict[str, Any]) -> None:
    ckpt, sha = doc.get("checkpoint"), doc.get("sha256")
    if ckpt is None and sha is None:
        raise _bad(path, "checkpoint", "and `sha256` are both missing",
                   "give the weights file (relative to the card) and/or its sha256")
    if sha is not None and (not isinstance(sha, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", sha)):
        raise _bad(path, "sha256", "must be 64 hex digits", "run `sha256sum WEIGHTS` and paste the digest")
    if ckpt is not None and (not isinstance(ckpt, str) or Path(ckpt).suffix not in CHECKPOINT_SUFFIXES):
        raise _bad(path, "checkpoint", f"must be a file name ending in {', '.join(CHECKPOINT_SUFFIXES)}",
                   "point it at the weights file, relative to the card")


def parse_card(path: str | os.PathLike[str]) -> ModelCard:
    """Read and validate one card; every error names the card file and the field."""
    path = Path(path).resolve()
    doc = _read_toml(path)
    _check_names(path, doc)
    bands = doc["in_bands"]
    if (not isinstance(bands, list) or not bands or any(b not in BAND_NAMES for b in bands)
            or len(set(bands)) != len(bands)):
        raise _bad(path, "in_bands", f"must list distinct band names from {', '.join(BAND_NAMES)} (got {bands!r})",
                   "e.g. in_bands = [\"R\", \"G\", \"B\", \"NIR\", \"elevation\"]")
    mean = _floats(path, "mean", doc["mean"], len(bands))
    std = _floats(path, "std", doc["std"], len(bands))
    if any(s <= 0 for s in std):
        raise _bad(path, "std", "must be positive", "give the per-band standard deviations used in training")
    _check_classes(path, doc)
    _check_weights(path, doc)
    for name in ("arch_params", "training", "scores"):
        if not isinstance(doc.get(name, {}), dict):
            raise _bad(path, name, "must be a table", f"write it as [{name}]")
    for name in ("demo", "default"):
        if not isinstance(doc.get(name, False), bool):
            raise _bad(path, name, "must be true or false", f"write {name} = true or {name} = false")
    ckpt, sha = doc.get("checkpoint"), doc.get("sha256")
    return ModelCard(
        id=doc["id"], arch=doc["arch"], encoder=doc["encoder"], in_bands=tuple(bands), mean=mean, std=std,
        classes=doc["classes"], nomenclature=doc["nomenclature"], card_path=path, title=str(doc.get("title", "")),
        checkpoint=(path.parent / ckpt) if ckpt else None, sha256=sha.lower() if sha else None,
        licence=str(doc.get("licence", "")), demo=doc.get("demo", False),
        description=str(doc.get("description", "")).strip(), provenance=str(doc.get("provenance", "")).strip(),
        arch_params=dict(doc.get("arch_params", {})), training=dict(doc.get("training", {})),
        default=doc.get("default", False), scores=dict(doc.get("scores", {})),
    )


# -- the registry ----------------------------------------------------------------------------------
_scan_lock = threading.Lock()
_scan_cache: tuple[tuple, tuple[list[ModelCard], list[str]]] | None = None


def scan_cards(extra: Sequence[Path] = ()) -> tuple[list[ModelCard], list[str]]:
    """All valid cards (in ``model_dirs(extra)``) and one message per invalid card, so one broken user card
    never hides the others."""
    global _scan_cache
    # folder order, then name: the shipped and user-given cards come before fine-tuned ones, whatever the paths
    files = list(dict.fromkeys(p.resolve() for d in model_dirs(extra) if d.is_dir() for p in sorted(d.glob("*.toml"))))
    key = tuple((str(p), p.stat().st_mtime_ns) for p in files)
    with _scan_lock:
        if _scan_cache is not None and _scan_cache[0] == key:
            return _scan_cache[1]
    cards: list[ModelCard] = []
    problems: list[str] = []
    seen: dict[str, Path] = {}
    for p in files:
        try:
            card = parse_card(p)
        except (InvalidModel, UnknownModel) as exc:
            problems.append(exc.message)
            continue
        if card.id in seen:
            problems.append(f"Model card {p}: id {card.id!r} is already used by {seen[card.id]} (ignored)")
            continue
        seen[card.id] = p
        cards.append(card)
    # Stable: folder order stays ($FLAIR_VIZ_MODELS first), and inside a folder a `default = true` card comes first.
    folders = [d.resolve() for d in model_dirs(extra)]
    cards.sort(key=lambda c: (folders.index(c.card_path.parent) if c.card_path.parent in folders else len(folders),
                              not c.default))
    with _scan_lock:
        _scan_cache = (key, (cards, problems))
    return cards, problems


def list_cards() -> list[ModelCard]:
    """Valid model cards (demo cards included; check :func:`is_demo` before presenting results)."""
    return scan_cards()[0]


def in_card_order(ids: Iterable[str]) -> list[str]:
    """Model IDs in the order the registry lists their cards (the default first), unknown IDs last by name.

    Lists built from stored predictions would otherwise be alphabetical, and the default model would not
    come first on every page."""
    rank = {c.id: i for i, c in enumerate(list_cards())}
    return sorted(set(ids), key=lambda m: (rank.get(m, len(rank)), m))


def get_card(id_or_path: str | os.PathLike[str], extra: Sequence[Path] = ()) -> ModelCard:
    """A card by ID (searched in ``model_dirs(extra)``), or by the path of a ``.toml`` card; unknown IDs
    list the known ones."""
    text = str(id_or_path)
    if text.endswith(".toml") or os.sep in text:
        return parse_card(text)
    cards, problems = scan_cards(extra)
    for card in cards:
        if card.id == text:
            return card
    known = ", ".join(c.id for c in cards) or "none"
    hint = f" ({len(problems)} card(s) are invalid: run `flair-viz models list`)" if problems else ""
    raise UnknownModel(f"Unknown model {text!r}; known models: {known}{hint}",
                       "pick one of the known IDs, or drop a card + checkpoint into models/ or $FLAIR_VIZ_MODELS")


def is_demo(model_id: str) -> bool:
    """The one demo flag: True when the model's card says ``demo = true``; False for unknown IDs.

    Every page and report asks this, not a catalog extra, so a demo model's results are flagged
    wherever they are shown, whichever catalog registered them.
    """
    try:
        return get_card(model_id).demo
    except (NotFound, InvalidModel):
        return False


# -- checks that need files, not torch -------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def smp_architectures() -> frozenset[str]:
    """Architecture names segmentation_models_pytorch exports, read from its source without importing it.

    Importing smp (and torch) takes seconds; listing cards must not. smp's ``__init__.py`` lists its
    models in ``_MODEL_ARCHITECTURES``; older versions only import them from ``.decoders``.
    """
    spec = importlib.util.find_spec("segmentation_models_pytorch")
    if spec is None or spec.origin is None:
        raise Misconfigured("segmentation_models_pytorch is not installed, so no model can be built",
                            "install the project's dependencies (pip install -e .)")
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "_MODEL_ARCHITECTURES" for t in node.targets):
            return frozenset(e.id for e in getattr(node.value, "elts", []) if isinstance(e, ast.Name))
    return frozenset(a.asname or a.name for node in tree.body if isinstance(node, ast.ImportFrom)
                     and (node.module or "").startswith("decoders") for a in node.names)


def check_arch(card: ModelCard) -> None:
    """Is the card's arch a segmentation_models_pytorch model? Kept out of :func:`parse_card` so a card
    is valid without smp installed; ``models list`` and model loading both run it."""
    if card.arch not in smp_architectures():
        raise _bad(card.card_path, "arch", f"{card.arch!r} is not a segmentation_models_pytorch architecture", ARCH_FIX)


def resolve_checkpoint(card: ModelCard) -> tuple[Path, str]:
    """The weights file of a card and its sha256, refusing weights that differ from the declared digest."""
    path = card.checkpoint
    if path is None:  # sha256 only: look for <sha256>.<suffix> beside the card or in the cache
        names = [card.sha256 + s for s in CHECKPOINT_SUFFIXES]  # type: ignore[operator]
        path = next((d / n for d in (card.card_path.parent, config.cache_dir() / "models") for n in names
                     if (d / n).exists()), None)
        if path is None:
            raise InvalidModel(f"{card.label}: no checkpoint named by its sha256 was found",
                               f"put the weights as {names[0]} beside the card, or set `checkpoint` in the card")
    if not path.exists():
        raise InvalidModel(f"{card.label}: checkpoint file not found: {path}",
                           "put the weights next to the card, or fix `checkpoint` in the card")
    digest = file_sha256(path)
    if card.sha256 and digest != card.sha256:
        raise InvalidModel(f"{card.label}: checkpoint {path.name} has sha256 {digest[:12]}… but the card declares "
                           f"{card.sha256[:12]}…", "use the weights the card describes, or update sha256 in the card")
    return path, digest
