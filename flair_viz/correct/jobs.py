"""Fine-tunes as background jobs: a ``flair-viz finetune`` subprocess, a progress file, cancel by signal.

The Explore page must not import torch, and one analyst's fine-tune must not freeze the page for the
others, so the page starts the CLI in its own process group and polls the JSON progress file the CLI
rewrites atomically after every epoch. Cancelling sends SIGTERM to the group; the CLI turns it into
a clean exit that removes its staging folder, and a SIGKILL leaves no final file either (see
:mod:`flair_viz.correct.finetune`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from flair_viz.core import atomic, config
from flair_viz.core.errors import NotFound
from flair_viz.predict.cards import model_dirs  # cards only: no torch

_PROCS: dict[str, subprocess.Popen] = {}  # jobs this process started (to reap them and see their exit code)


def jobs_dir() -> Path:
    return config.user_data_dir() / "jobs"


def write_progress(path: str | os.PathLike[str] | None, doc: dict) -> None:
    """The CLI's side: rewrite the progress file atomically, so a reader never sees half a JSON."""
    if path:
        atomic.write_text(path, json.dumps({**doc, "time": time.time()}))


def start(parent_id: str, corrections: str | os.PathLike[str], out_id: str, *, epochs: int = 20,
          train: str = "decoder", device: str | None = None, catalog: str | os.PathLike[str] | None = None,
          evaluate: str = "corrected", env: dict[str, str] | None = None) -> str:
    """Start ``flair-viz finetune`` in the background; returns the job ID."""
    job_id = f"ft-{uuid.uuid4().hex[:10]}"
    folder = jobs_dir() / job_id
    folder.mkdir(parents=True)
    cmd = [sys.executable, "-m", "flair_viz", "finetune", "--model", parent_id, "--corrections", str(corrections),
           "--out", out_id, "--epochs", str(epochs), "--train", train, "--evaluate", evaluate,
           "--progress", str(folder / "progress.json")]
    if device:
        cmd += ["--device", device]
    if catalog:
        cmd += ["--catalog", str(catalog)]
    write_progress(folder / "progress.json", {"state": "starting", "epoch": 0, "epochs": epochs, "model_id": out_id})
    with open(folder / "log.txt", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**config.child_environment(), **(env or {})}, cwd=config.REPO_ROOT)
    _PROCS[job_id] = proc
    atomic.write_text(folder / "job.json", json.dumps({"pid": proc.pid, "cmd": cmd, "out_id": out_id}))
    return job_id


def _alive(job_id: str, pid: int) -> bool:
    proc = _PROCS.get(job_id)
    if proc is not None:
        return proc.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def status(job_id: str) -> dict:
    """The job's last progress (``state``: starting, running, saving, evaluating, done, failed, cancelled)."""
    folder = jobs_dir() / job_id
    try:
        job = json.loads((folder / "job.json").read_text(encoding="utf-8"))
        doc = json.loads((folder / "progress.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise NotFound(f"Unknown fine-tune job {job_id}", "start the fine-tune again") from None
    if doc.get("state") not in ("done", "failed", "cancelled") and not _alive(job_id, int(job["pid"])):
        log = (folder / "log.txt").read_text(encoding="utf-8", errors="replace")[-800:]
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
    if _alive(job_id, pid):
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    proc = _PROCS.pop(job_id, None)
    if proc is not None:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(pid, signal.SIGKILL)
            proc.wait(10)
    doc = json.loads((folder / "progress.json").read_text(encoding="utf-8"))
    if doc.get("state") not in ("done", "failed"):
        write_progress(folder / "progress.json", {**doc, "state": "cancelled"})
