"""The one way to run a library function in a child Python process, with its progress and its error.

Why a child process at all: the Streamlit UI must never import torch (~0.8 GB per process), one
analyst's fine-tune must not freeze the page for the others, and a CPU tile server exports its ONNX
graph in a child so that it never holds torch itself. Before this module each of those did it its own
way (a ``python -c`` code string, a CLI subprocess whose stderr was parsed for ``error:``/``fix:``, a
CLI with a progress file); now they all call a library function here, the same way.

The parent and the child talk through files in one job folder, each written atomically, so a reader
never sees half a document and a killed child leaves nothing half-written:

- ``call.json``: what to run, the function's ``module:name`` and its keyword arguments (JSON);
- ``progress.json``: the last document the function passed to its ``progress`` callback (when asked);
- ``result.json``: ``{"value": ...}`` (the function's JSON result), ``{"error": {...}}`` (a
  :class:`FlairVizError`'s condition, problem and fix, re-raised in the parent as the same condition),
  or ``{"cancelled": true}`` (SIGTERM, see :func:`cancel`);
- ``log.txt``: the child's stdout and stderr, whose tail names a crash that left no result.

Callers pass the function itself, so the call site names it in code like any import; only the
runner turns it into ``module:name`` to cross the process boundary, as ``pickle`` does. A caller
below the function it runs (``predict.onnx_engine`` runs ``predict.models``, which imports it) passes
the ``module:name`` string instead: importing upwards would be an import cycle.
"""

from __future__ import annotations

import json
import os
import pkgutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flair_viz.core import atomic, config
from flair_viz.core.errors import FlairVizError, Misconfigured

Target = Callable[..., Any] | str
CALL, PROGRESS, RESULT, LOG = "call.json", "progress.json", "result.json", "log.txt"
POLL_S = 0.1


def target_name(fn: Target) -> str:
    """``module:name`` of a module-level function (what the child imports); a string is taken as given."""
    if isinstance(fn, str):
        return fn
    name = f"{fn.__module__}:{fn.__qualname__}"
    if "<locals>" in fn.__qualname__ or pkgutil.resolve_name(name) is not fn:
        raise TypeError(f"{name} is not a module-level function, so a child process cannot import it")
    return name


def start(fn: Target, kwargs: dict[str, Any], folder: str | os.PathLike[str], *, progress: bool = False,
          settings: dict[str, bool | str] | None = None) -> subprocess.Popen:
    """Start ``fn(**kwargs)`` in a child process, in its own process group, and return at once.

    ``progress=True`` passes the function a ``progress`` callback whose documents :func:`read_progress`
    reads. ``settings`` are :class:`flair_viz.core.config.Settings` fields (by name) the child gets
    instead of this process's, e.g. ``{"int8_build": False}``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic.write_text(folder / CALL, json.dumps({"target": target_name(fn), "kwargs": kwargs, "progress": progress}))
    with open(folder / LOG, "wb") as log:
        return subprocess.Popen([sys.executable, "-m", "flair_viz.core.child", str(folder)], stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True, cwd=config.REPO_ROOT,
                                env=config.child_environment(**(settings or {})))


def read_progress(folder: str | os.PathLike[str]) -> dict | None:
    """The last progress document, or None before the first."""
    return _read(Path(folder) / PROGRESS)


def write_progress(path: str | os.PathLike[str], doc: dict) -> None:
    """Rewrite a progress file atomically, with the time it was written (a reader sees a stalled job)."""
    atomic.write_text(path, json.dumps({**doc, "time": time.time()}))


def outcome(folder: str | os.PathLike[str]) -> dict | None:
    """The child's ``result.json`` (value, error or cancelled), or None while it has not finished."""
    return _read(Path(folder) / RESULT)


def result(folder: str | os.PathLike[str], *, what: str, fix: str,
           crash: type[FlairVizError] = Misconfigured) -> Any:
    """The value a finished child returned, or its error raised here as the same condition.

    A child that died without a result (killed, out of memory, an exception that is not a
    :class:`FlairVizError`) raises ``crash`` with ``what`` failed, the log's last lines, and ``fix``.
    """
    doc = outcome(folder)
    if doc and "value" in doc:
        return doc["value"]
    if doc and "error" in doc:
        raise rebuild(doc["error"], what, fix, crash)
    if doc and doc.get("cancelled"):
        raise crash(f"{what} was cancelled", fix)
    raise crash(f"{what} failed: {log_tail(folder)}", fix)


def run(fn: Target, kwargs: dict[str, Any], *, what: str, fix: str, crash: type[FlairVizError] = Misconfigured,
        progress: Callable[[dict], None] | None = None, settings: dict[str, bool | str] | None = None,
        timeout: float | None = None) -> Any:
    """Run ``fn(**kwargs)`` in a child process and wait: its value, or its error as the same condition.

    ``progress``, if given, is called here with each new document the function reports. Past ``timeout``
    seconds the child's process group is killed and ``crash`` is raised.
    """
    with tempfile.TemporaryDirectory(prefix="flair-viz-child-") as tmp:
        proc = start(fn, kwargs, tmp, progress=progress is not None, settings=settings)
        deadline = None if timeout is None else time.monotonic() + timeout
        seen = None
        try:
            while True:
                finished = proc.poll() is not None
                doc = read_progress(tmp) if progress else None
                if doc is not None and doc != seen:
                    seen = doc
                    progress(doc)
                if finished:
                    break
                if deadline is not None and time.monotonic() > deadline:
                    cancel(proc.pid, proc)
                    raise crash(f"{what} took longer than {timeout:.0f} s and was stopped", fix)
                time.sleep(POLL_S)
        except BaseException:
            if proc.poll() is None:  # the parent is interrupted (Ctrl-C, Streamlit rerun): the child goes too
                cancel(proc.pid, proc)
            raise
        return result(tmp, what=what, fix=fix, crash=crash)


def alive(pid: int, proc: subprocess.Popen | None = None) -> bool:
    """Whether the child still runs (``proc`` when this process started it: it also reaps it)."""
    if proc is not None:
        return proc.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cancel(pid: int, proc: subprocess.Popen | None = None, grace_s: float = 30.0) -> None:
    """SIGTERM to the child's process group (it unwinds like Ctrl-C, so ``finally`` blocks run), then
    SIGKILL if it has not exited after ``grace_s`` (only known when this process started it)."""
    if not alive(pid, proc):
        return
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if proc is not None:
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(pid, signal.SIGKILL)
            proc.wait(10)


def log_tail(folder: str | os.PathLike[str], chars: int = 300) -> str:
    """The end of the child's log, on one line: what a crash that left no result said last."""
    try:
        text = (Path(folder) / LOG).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "the child process left no log"
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return " ".join(lines[-3:])[-chars:] or "the child process exited without a result or a message"


def rebuild(error: dict, what: str, fix: str, crash: type[FlairVizError]) -> FlairVizError:
    """The child's error as the first class of its MRO that this process knows, same problem and fix.

    A class of a module this process never imported is not known here: its nearest known base (at
    worst a condition from :mod:`flair_viz.core.errors`) keeps the HTTP status and what callers catch.
    Something that was not a :class:`FlairVizError` at all is a crash.
    """
    known = {_name(c): c for c in _subclasses(FlairVizError)}
    cls = next((known[n] for n in error.get("classes", []) if n in known), None)
    if cls is None:
        return crash(f"{what} failed: {error.get('problem', '')}", fix)
    out = cls.__new__(cls)
    FlairVizError.__init__(out, error["problem"], error.get("fix", ""))  # as with_context does: any __init__
    return out


def _subclasses(cls: type) -> list[type]:
    out = [cls]
    for sub in cls.__subclasses__():
        out.extend(_subclasses(sub))
    return out


def _name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# -- the child's side ------------------------------------------------------------------------------
def _terminate(signum, frame) -> None:
    """SIGTERM (a cancel) unwinds like Ctrl-C, so the function's ``finally`` blocks remove staging files."""
    raise KeyboardInterrupt


def main(folder: Path) -> int:
    """Run the call in ``folder`` and write its result; the exit status only tells a reader of the log."""
    signal.signal(signal.SIGTERM, _terminate)
    call = json.loads((folder / CALL).read_text(encoding="utf-8"))
    kwargs = dict(call["kwargs"])
    if call["progress"]:
        kwargs["progress"] = lambda doc: write_progress(folder / PROGRESS, doc)
    try:
        doc = {"value": pkgutil.resolve_name(call["target"])(**kwargs)}
        text = json.dumps(doc)
    except FlairVizError as exc:
        print(f"error: {exc.problem}" + (f"\nfix: {exc.fix}" if exc.fix else ""), file=sys.stderr)
        text, code = json.dumps({"error": _error(exc)}), 3
    except KeyboardInterrupt:
        text, code = json.dumps({"cancelled": True}), 130
    except Exception as exc:  # noqa: BLE001 - any other failure is reported to the parent as a crash
        import traceback

        traceback.print_exc()
        text, code = json.dumps({"error": _error(exc)}), 1
    else:
        code = 0
    atomic.write_text(folder / RESULT, text)
    return code


def _error(exc: BaseException) -> dict:
    classes = [_name(c) for c in type(exc).__mro__ if issubclass(c, FlairVizError)]
    if isinstance(exc, FlairVizError):
        return {"classes": classes, "problem": exc.problem, "fix": exc.fix}
    return {"classes": [], "problem": f"{type(exc).__name__}: {str(exc)[:300]}", "fix": ""}


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
