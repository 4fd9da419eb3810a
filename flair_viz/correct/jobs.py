"""Fine-tunes as background jobs: :func:`finetune_and_compare` in a child process, a progress file,
cancel by signal.

The Explore page must not import torch, and one analyst's fine-tune must not freeze the page for the
others, so the page starts the job with :mod:`flair_viz.core.child` (its own process group) and polls
the progress file the job rewrites atomically after every epoch. Cancelling sends SIGTERM to the
group; the child turns it into a clean exit that removes the staging folder, and a SIGKILL leaves no
final file either (see :mod:`flair_viz.correct.training`). ``flair-viz finetune`` runs the same
:func:`finetune_and_compare` in its own process.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

from flair_viz.core import atomic, child, config
from flair_viz.core.errors import NotFound, Unreadable
from flair_viz.predict.cards import model_dirs  # cards only: no torch

_PROCS: dict[str, subprocess.Popen] = {}  # jobs this process started (to reap them and see their exit code)
TERMINAL = ("done", "failed", "cancelled")


def jobs_dir() -> Path:
    return config.user_data_dir() / "jobs"


def write_progress(path: str | os.PathLike[str] | None, doc: dict) -> None:
    """The CLI's ``--progress`` file, rewritten atomically (none when no path is given)."""
    if path:
        child.write_progress(path, doc)


def finetune_and_compare(parent_id: str, corrections: str, out_id: str, catalog: str, *, epochs: int = 20,
                         lr: float | None = None, train: str = "decoder", keep: float | None = None, seed: int = 0,
                         device: str | None = None, evaluate: str = "corrected", models_dir: str | None = None,
                         progress: Callable[[dict], None] | None = None) -> dict:
    """Fine-tune, then compare parent and new model on ground truth; the final document (``state`` done,
    the training result and the ``evaluation`` rows). Every state goes to ``progress`` first.

    JSON arguments only (paths as strings), so that a child process can run it (:func:`start`).
    """
    from flair_viz.core.catalog import Catalog
    from flair_viz.correct import training  # imports torch when it trains

    defaults = training.Settings()
    settings = training.Settings(epochs=epochs, lr=defaults.lr if lr is None else lr, train=train,
                                 keep=defaults.keep if keep is None else keep, seed=seed, device=device)

    def report(doc: dict) -> None:
        if progress:
            progress({**doc, "model_id": out_id})

    result = training.finetune(parent_id, corrections, out_id, Catalog.load(catalog), settings,
                               models_dir=models_dir, progress=report)
    doc = {"state": "evaluating", **result.to_json()}
    report(doc)
    rows = [] if evaluate == "none" else child.run(
        compare, {"parent_id": parent_id, "new_id": out_id, "corrections": corrections, "catalog": catalog,
                  "scope": evaluate, "device": device, "models_dir": models_dir},
        what=f"The comparison of {parent_id} and {out_id}", crash=Unreadable,
        fix=f"run `flair-viz corrections compare --parent {parent_id} --model {out_id} --corrections {corrections}` "
            "to see why; the new model itself is saved")
    doc = {**doc, "state": "done", "evaluation": rows}
    report(doc)
    return doc


def compare(parent_id: str, new_id: str, corrections: str, catalog: str, scope: str = "corrected",
            device: str | None = None, models_dir: str | None = None) -> list[dict]:
    """Parent vs new model on ground truth (:func:`flair_viz.correct.evaluate.compare`), from paths.

    :func:`finetune_and_compare` runs it in a fresh process: predicting with the new model in the process
    that trained it made torch 2.14 (CPU) abort at interpreter exit ("terminate called without an active
    exception", exit 134); a fresh process only predicts, and costs one more torch import.
    """
    from flair_viz.core.catalog import Catalog
    from flair_viz.correct import evaluate, store

    return evaluate.compare(parent_id, new_id, store.read_file(corrections), Catalog.load(catalog), scope, device,
                            models_dirs=[Path(models_dir)] if models_dir else ())


def start(parent_id: str, corrections: str | os.PathLike[str], out_id: str, *, epochs: int = 20,
          train: str = "decoder", device: str | None = None, catalog: str | os.PathLike[str] | None = None,
          evaluate: str = "corrected") -> str:
    """Start :func:`finetune_and_compare` in the background; returns the job ID."""
    job_id = f"ft-{uuid.uuid4().hex[:10]}"
    folder = jobs_dir() / job_id
    folder.mkdir(parents=True)
    write_progress(folder / child.PROGRESS, {"state": "starting", "epoch": 0, "epochs": epochs, "model_id": out_id})
    kwargs = {"parent_id": parent_id, "corrections": str(corrections), "out_id": out_id,
              "catalog": str(catalog or config.catalog_path()), "epochs": epochs, "train": train, "device": device,
              "evaluate": evaluate}
    proc = child.start(finetune_and_compare, kwargs, folder, progress=True)
    _PROCS[job_id] = proc
    atomic.write_text(folder / "job.json", json.dumps({"pid": proc.pid, "kwargs": kwargs, "out_id": out_id}))
    return job_id


def status(job_id: str) -> dict:
    """The job's last progress (``state``: starting, running, saving, evaluating, done, failed, cancelled)."""
    folder = jobs_dir() / job_id
    try:
        job = json.loads((folder / "job.json").read_text(encoding="utf-8"))
        doc = json.loads((folder / child.PROGRESS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise NotFound(f"Unknown fine-tune job {job_id}", "start the fine-tune again") from None
    if doc.get("state") in TERMINAL:
        return doc
    end = child.outcome(folder)
    if end and "error" in end:
        return {**doc, "state": "failed", "problem": end["error"]["problem"],
                "fix": end["error"]["fix"] or "see its log and start it again"}
    if end and end.get("cancelled"):
        return {**doc, "state": "cancelled"}
    if not child.alive(int(job["pid"]), _PROCS.get(job_id)):
        log = (folder / child.LOG).read_text(encoding="utf-8", errors="replace")[-800:]
        doc = {**doc, "state": "failed", "problem": "The fine-tune process stopped without finishing",
               "fix": "see its log and start it again", "log": log}
    return doc


def finished() -> list[dict]:
    """Every fine-tune that finished with an evaluation, newest first: what the Metrics page lists.

    The evaluation (parent vs fine-tuned on ground truth, fine-tuning pixels apart) is computed once by the
    job itself, so the page shows it without loading a model; a job whose card is gone is left out.
    """
    cards = {p.stem for d in model_dirs() if d.is_dir() for p in d.glob("*.toml")}
    done = []
    for progress in jobs_dir().glob("*/progress.json"):
        try:
            doc = json.loads(progress.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # a job folder being written or damaged: it is not a result
        if doc.get("state") == "done" and doc.get("evaluation") and doc.get("model_id") in cards:
            done.append(doc)
    return sorted(done, key=lambda d: d.get("time", 0), reverse=True)


def cancel(job_id: str) -> None:
    """Stop a running job (SIGTERM to its process group); nothing it was writing is kept."""
    folder = jobs_dir() / job_id
    try:
        pid = int(json.loads((folder / "job.json").read_text(encoding="utf-8"))["pid"])
    except (OSError, ValueError, KeyError):
        raise NotFound(f"Unknown fine-tune job {job_id}", "nothing to cancel") from None
    child.cancel(pid, _PROCS.pop(job_id, None))
    doc = json.loads((folder / child.PROGRESS).read_text(encoding="utf-8"))
    if doc.get("state") not in ("done", "failed"):
        write_progress(folder / child.PROGRESS, {**doc, "state": "cancelled"})
