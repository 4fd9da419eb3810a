"""Fine-tune a model on painted corrections: decoder (or head) only, in seconds, offline.

The loop of microsoft/landcover: an analyst paints the right class over a wrong prediction, the
model learns those pixels, the map re-predicts. What is trained:

* ``head``: the segmentation head; ``decoder`` (default): decoder + head; ``all``: the encoder too.
  With the encoder frozen its features are computed once per window, so each step only runs the
  decoder: that is what makes the CPU fast enough.
* BatchNorm stays in eval mode (a few windows would wreck its running statistics).
* The loss is cross-entropy on the corrected pixels plus ``keep`` × cross-entropy towards the
  parent's own prediction on the other pixels around them, so the rest of the map does not drift.
* With the encoder frozen a step runs the decoder on a crop of the cached features around the
  corrected pixels (:func:`crop_box`); the before/after figures use the whole window.

The result is a new checkpoint (safetensors) and a new card, staged in a hidden folder and renamed
into place checkpoint first, card last: a killed run leaves no checkpoint or card under a final
name that the model registry would pick up half-made.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from flair_viz.core import config
from flair_viz.core.catalog import Catalog
from flair_viz.core.errors import InvalidInput, InvalidModel, UnknownModel
from flair_viz.core.stamps import file_sha256
from flair_viz.correct.labels import Window_, channel_lut, training_windows
from flair_viz.correct.store import read_file
from flair_viz.predict import cards, models
from flair_viz.predict.geometry import ALIGN

TRAIN_PARTS: tuple[str, ...] = ("head", "decoder", "all")
CROP_MARGIN = 64  # px of context around the corrected pixels in a training step (beyond the decoder's reach)
Progress = Callable[[dict], None]


@dataclass(frozen=True)
class Settings:
    """How to fine-tune; recorded in the new card's ``[training]`` table."""

    epochs: int = 20
    lr: float = 3e-3
    train: str = "decoder"
    keep: float = 0.2
    seed: int = 0
    device: str | None = None

    def check(self) -> None:
        if self.train not in TRAIN_PARTS:
            raise InvalidInput(f"Cannot train {self.train!r}", f"use --train {' | '.join(TRAIN_PARTS)}")
        if not 1 <= self.epochs <= 10_000:
            raise InvalidInput(f"--epochs must be 1..10000 (got {self.epochs})", "use e.g. --epochs 20")
        if not 0 < self.lr < 1:
            raise InvalidInput(f"--lr must be between 0 and 1 (got {self.lr})", "use e.g. --lr 0.003")
        if self.keep < 0:
            raise InvalidInput(f"--keep must be 0 or more (got {self.keep})", "use e.g. --keep 0.2")


@dataclass
class Result:
    model_id: str
    card_path: str
    checkpoint_path: str
    parent: str
    pixels: int
    windows: int
    agreement_before: float  # share of corrected pixels the parent predicts as painted
    agreement_after: float  # the same for the fine-tuned model
    right_before: int  # corrected pixels the parent predicts as painted
    right_after: int  # the same for the fine-tuned model
    seconds: float
    device: str

    def to_json(self) -> dict:
        return asdict(self)


def user_models_dir() -> Path:
    """Where fine-tuned models go: ``models/`` in the user data folder (on the card search path)."""
    return config.user_data_dir() / "models"


def parent_checkpoint(card: cards.ModelCard) -> Path:
    """The parent's weights, or an error saying there is nothing to fine-tune."""
    if card.checkpoint is None and card.sha256 is None:
        raise InvalidModel(f"{card.label} has no checkpoint, so there is nothing to fine-tune",
                           "give the card a `checkpoint` (weights file beside it), or fine-tune another model")
    try:
        return cards.resolve_checkpoint(card)[0]
    except InvalidModel as exc:
        raise InvalidModel(f"{card.label} has no usable checkpoint, so there is nothing to fine-tune ({exc.problem})",
                           exc.fix) from None


def check_new_id(out_id: str, parent: cards.ModelCard, folder: Path) -> None:
    if not cards.ID_RE.match(out_id or ""):
        raise InvalidInput(f"--out {out_id!r} is not a valid model ID",
                           "use letters, digits, '_', '-' or '.', starting with a letter or digit (max 64)")
    try:
        cards.get_card(out_id)
        taken = True
    except UnknownModel:
        taken = False
    if taken or (folder / f"{out_id}.toml").exists() or out_id == parent.id:
        raise InvalidInput(f"Model ID {out_id!r} is already used", "choose another --out ID, or delete that card")


def _trainable(module, part: str):
    for p in module.parameters():
        p.requires_grad_(part == "all")
    heads = [module.segmentation_head] + ([module.decoder] if part == "decoder" else [])
    for sub in heads if part != "all" else []:
        for p in sub.parameters():
            p.requires_grad_(True)
    return [p for p in module.parameters() if p.requires_grad]


def _staged_forward(module, part: str, xs: list) -> tuple[list, Callable]:
    """Inputs of the trainable part, computed once when the part before it is frozen, and its forward."""
    import torch

    if part == "all":
        return xs, module
    with torch.no_grad():
        feats = [module.encoder(x) for x in xs]
        if part == "head":
            return [module.decoder(f) for f in feats], module.segmentation_head
    return feats, lambda f: module.segmentation_head(module.decoder(f))


def crop_box(painted: np.ndarray, part: str) -> tuple[int, int, int, int]:
    """Rows/cols (y0, y1, x0, x1) a training step needs: the corrected pixels plus a margin, stride-aligned.

    With the encoder frozen, the decoder is convolutional over cached features, so a crop of the
    features gives the same logits inside it as the whole window (away from the crop's border, which
    the margin covers): a step costs the crop, not the 512 px window. Training the encoder too needs
    the whole window.
    """
    h, w = painted.shape
    if part == "all":
        return 0, h, 0, w
    rows, cols = np.nonzero(painted)
    a = ALIGN  # crops start and end on the encoder's coarsest stride, so every feature scale cuts exactly
    y0, x0 = max(0, (rows.min() - CROP_MARGIN) // a * a), max(0, (cols.min() - CROP_MARGIN) // a * a)
    y1 = min(h, -(-(rows.max() + 1 + CROP_MARGIN) // a) * a)
    x1 = min(w, -(-(cols.max() + 1 + CROP_MARGIN) // a) * a)
    return int(y0), int(y1), int(x0), int(x1)


def _crop(inputs, box: tuple[int, int, int, int], full: tuple[int, int]):
    """The cached features (a list, one per scale) or decoder output cut to ``box`` at their own stride."""
    y0, y1, x0, x1 = box

    def cut(t):
        s = full[0] // t.shape[-2]
        return t[..., y0 // s:y1 // s, x0 // s:x1 // s] if s >= 1 else t
    return [cut(t) for t in inputs] if isinstance(inputs, (list, tuple)) else cut(inputs)


def _agreement(values: np.ndarray, logits_list: list, targets: list) -> tuple[int, int]:
    hit = total = 0
    for logits, painted in zip(logits_list, targets):
        pred = values[logits.argmax(0).cpu().numpy()]
        m = painted > 0
        hit += int((pred[m] == painted[m]).sum())
        total += int(m.sum())
    return hit, total


def train(card: cards.ModelCard, wins: list[Window_], settings: Settings,
          progress: Progress | None = None) -> tuple[object, int, int, int]:
    """Fine-tune a fresh copy of the card's network on the windows.

    Returns (module, corrected pixels, of them predicted as painted before, and after).
    """
    import torch

    from flair_viz.predict import checkpoints  # imports torch: only when training

    torch.manual_seed(settings.seed)
    dev = models.select_device(settings.device)
    module = models.build_module(card)
    checkpoints.load_strict(module, checkpoints.read_state_dict(parent_checkpoint(card), card.label), card.label)
    module.eval().to(dev)  # eval: BatchNorm keeps the parent's statistics; gradients still flow
    lut = torch.from_numpy(channel_lut(card)).to(dev)
    values = card.output_values()
    xs = [torch.from_numpy(w.x[None]).to(dev) for w in wins]
    painted = [torch.from_numpy(w.painted.astype(np.int64)).to(dev) for w in wins]
    valid = [torch.from_numpy(w.valid).to(dev) for w in wins]
    params = _trainable(module, settings.train)
    inputs, forward = _staged_forward(module, settings.train, xs)
    with torch.no_grad():
        parent_logits = [forward(i)[0] for i in inputs]
    teacher = [lg.argmax(0) for lg in parent_logits]
    before, total = _agreement(values, parent_logits, [w.painted for w in wins])
    opt = torch.optim.Adam(params, lr=settings.lr)
    ce = torch.nn.functional.cross_entropy
    order = np.random.default_rng(settings.seed)
    boxes = [crop_box(w.painted, settings.train) for w in wins]
    crops = [_crop(i, b, w.painted.shape) if settings.train != "all" else i for i, b, w in zip(inputs, boxes, wins)]
    for epoch in range(settings.epochs):
        total_loss = 0.0
        for k in order.permutation(len(wins)):
            y0, y1, x0, x1 = boxes[k]
            logits = forward(crops[k])[0]  # (K, h, w) over the crop
            target, ok = painted[k][y0:y1, x0:x1], valid[k][y0:y1, x0:x1]
            corr = target > 0
            flat = logits.permute(1, 2, 0)
            loss = ce(flat[corr], lut[target[corr]])
            rest = ok & ~corr
            if settings.keep > 0 and rest.any():
                loss = loss + settings.keep * ce(flat[rest], teacher[k][y0:y1, x0:x1][rest])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total_loss += loss.item()
        if progress:
            progress({"state": "running", "epoch": epoch + 1, "epochs": settings.epochs,
                      "loss": round(total_loss / len(wins), 5)})
    with torch.no_grad():
        after_logits = [forward(i)[0] for i in inputs]
    after, _ = _agreement(values, after_logits, [w.painted for w in wins])
    return module, total, before, after


def _toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise InvalidModel(f"Cannot write {v!r} into a card", "use numbers, strings or lists in arch_params")


def card_text(parent: cards.ModelCard, out_id: str, checkpoint: str, sha256: str, training: dict) -> str:
    """The new card: the parent's architecture and normalisation, its own weights, where it came from."""
    pixels = training["pixels"]
    demo = " DEMO" if parent.demo else ""
    head = {
        "id": out_id, "title": f"{parent.title or parent.id} + {pixels} corrected px{demo}", "arch": parent.arch,
        "encoder": parent.encoder, "in_bands": list(parent.in_bands), "mean": list(parent.mean),
        "std": list(parent.std), "classes": parent.classes, "nomenclature": parent.nomenclature,
        "checkpoint": checkpoint, "sha256": sha256, "licence": parent.licence, "demo": parent.demo,
        "description": (f"{parent.id} fine-tuned ({training['train']}) on {pixels} corrected pixels of "
                        f"{training['corrections']}. Its scores on those pixels are training scores."
                        + (" The parent is a DEMO model: not for evaluation." if parent.demo else "")),
        "provenance": f"flair-viz finetune --model {parent.id} (parent sha256 {training['parent_sha256']})",
    }
    lines = ["# Written by `flair-viz finetune`; the [training] table says what it learnt from."]
    lines += [f"{k} = {_toml_value(v)}" for k, v in head.items()]
    if parent.arch_params:
        lines += ["", "[arch_params]"] + [f"{k} = {_toml_value(v)}" for k, v in parent.arch_params.items()]
    lines += ["", "[training]"] + [f"{k} = {_toml_value(v)}" for k, v in training.items() if v is not None]
    return "\n".join(lines) + "\n"


def finetune(parent_id: str, corrections_path: str | os.PathLike[str], out_id: str, catalog: Catalog,
             settings: Settings = Settings(), models_dir: str | os.PathLike[str] | None = None,
             progress: Progress | None = None) -> Result:
    """Fine-tune ``parent_id`` on a corrections GeoPackage and register the result as ``out_id``."""
    import torch
    from safetensors.torch import save_file

    t0 = time.perf_counter()
    settings.check()
    parent = cards.get_card(parent_id)
    folder = Path(models_dir) if models_dir else user_models_dir()
    check_new_id(out_id, parent, folder)
    parent_ckpt = parent_checkpoint(parent)
    corrections_path = Path(corrections_path).resolve()
    corrections = read_file(corrections_path)
    wins = training_windows(parent, corrections, catalog)
    pixels = sum(w.pixels for w in wins)
    if progress:
        progress({"state": "running", "epoch": 0, "epochs": settings.epochs, "pixels": pixels, "windows": len(wins)})
    module, total, right_before, right_after = train(parent, wins, settings, progress)
    before, after = right_before / total, right_after / total
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(f".finetune-{out_id}-*"):  # what a killed earlier run of this ID left
        shutil.rmtree(stale, ignore_errors=True)
    stage = Path(tempfile.mkdtemp(prefix=f".finetune-{out_id}-", dir=folder))
    try:
        ckpt_name = f"{out_id}.safetensors"
        save_file({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}, str(stage / ckpt_name))
        sha = file_sha256(stage / ckpt_name)
        training = {"parent": parent.id, "parent_sha256": file_sha256(parent_ckpt),
                    "corrections": str(corrections_path), "corrections_sha256": file_sha256(corrections_path),
                    "corrections_count": len(corrections), "pixels": pixels, "windows": len(wins),
                    "train": settings.train, "epochs": settings.epochs, "lr": settings.lr, "keep": settings.keep,
                    "seed": settings.seed, "device": str(models.select_device(settings.device)),
                    "agreement_before": round(before, 6), "agreement_after": round(after, 6),
                    "seconds": round(time.perf_counter() - t0, 2), "torch": torch.__version__}
        (stage / f"{out_id}.toml").write_text(card_text(parent, out_id, ckpt_name, sha, training), encoding="utf-8")
        cards.parse_card(stage / f"{out_id}.toml")  # never publish a card the registry would refuse
        for name in (ckpt_name, f"{out_id}.toml"):  # checkpoint first, card last: the card names a whole file
            with open(stage / name, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(stage / name, folder / name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return Result(out_id, str(folder / f"{out_id}.toml"), str(folder / ckpt_name), parent.id, pixels, len(wins),
                  before, after, right_before, right_after, round(time.perf_counter() - t0, 2), training["device"])
