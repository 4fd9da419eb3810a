"""Write files so that a crash never leaves a partial file under a final name, nor a run half a set.

Everything FLAIR Viz writes (COGs, Parquet, GeoPackages, CSV, JSON) goes through here:
write to a hidden temp file in the same folder, fsync, then ``os.replace``, which is atomic on POSIX.

A command that writes several files into one ``--out`` folder (``change``, ``trend``, ``predict --out``)
publishes them as one set with :func:`output_set`: a completion manifest, :data:`SET_MANIFEST`, says
``"complete": false`` from the moment the run starts touching the folder, and lists every file of the
set with its size and mtime once the last one is written. Readers check it with :func:`check_set`. A
manifest rather than a staged folder swapped in: the folder may hold the user's own files, and
``predict --out`` resumes from the scenes an interrupted run finished, both of which a swap would lose.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import signal
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from flair_viz.core.errors import InvalidInput

SET_MANIFEST = "flair-viz-run.json"
# The project's own work-file names, and only those, so that a sweep never touches a user's file:
# atomic temps ``.<final>.<8 mkstemp chars>.partial<suffix>`` and COG scratches
# ``.<final>.<12 hex>.scratch.tif``, each with the side-cars GDAL and our writers add (``.ovr.tmp``,
# ``.aux.xml``, ``.src.vrt``...).
WORK_FILE_RES = (re.compile(r"^\.(?P<final>.+)\.[a-z0-9_]{8}\.partial(?:\..*)?$"),
                 re.compile(r"^\.(?P<final>.+)\.[0-9a-f]{12}\.scratch\.tif(?:\..*)?$"))


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp path beside ``final``; on success it replaces ``final``, on error it is removed."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".partial" + final.suffix, dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    tmp_path.unlink()  # writers such as GDAL want to create the file themselves
    try:
        yield tmp_path
        if tmp_path.exists():
            with open(tmp_path, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp_path, final)
    finally:
        discard(tmp_path)


def discard(path: Path) -> None:
    """Remove a work file and the side-cars GDAL writes beside it (``.aux.xml``, ``.ovr``, ``.msk``).

    The one side-car cleanup: temp files here, COG scratch files in :mod:`flair_viz.core.cog`.
    """
    path.unlink(missing_ok=True)
    for side in path.parent.glob(path.name + ".*"):
        side.unlink(missing_ok=True)


def write_text(final: str | os.PathLike[str], text: str) -> Path:
    """Atomically write a text file (UTF-8)."""
    with atomic_path(final) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(final)


def write_bytes(final: str | os.PathLike[str], data: bytes) -> Path:
    """Atomically write a binary file."""
    with atomic_path(final) as tmp:
        tmp.write_bytes(data)
    return Path(final)


def output_folder(path: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]] = (),
                  names: Iterable[str] = ()) -> Path:
    """The resolved ``--out`` folder of a command writing several files, refused before any work when it is
    a file, or when one of the ``names`` it will write there is one of the ``inputs``."""
    folder = Path(path).resolve()
    if folder.exists() and not folder.is_dir():
        raise InvalidInput(f"--out {folder} is a file", "give a folder (it is created if missing)")
    check_outputs([folder / name for name in names], inputs, option="--out")
    return folder


def check_output(out: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]] = (),
                 option: str = "OUTPUT") -> Path:
    """Refuse an output file that cannot be written or would destroy an input, before any work starts.

    The one check of output files: found after an hour of inference, a folder in the way is a lost
    hour; found never, an output equal to the input overwrites the user's image.
    """
    return check_outputs([out], inputs, option)[0]


def check_outputs(outs: Iterable[str | os.PathLike[str]], inputs: Iterable[str | os.PathLike[str]] = (),
                  option: str = "OUTPUT") -> list[Path]:
    """:func:`check_output` for many outputs at once (a batch's 100,000 scenes: one set lookup each)."""
    inputs = [Path(i) for i in inputs]
    resolved = {i.resolve(): i for i in inputs}
    # hard links share an inode, whatever their paths
    inodes = {(st.st_dev, st.st_ino): i for i in inputs if (st := _stat(i)) is not None}
    checked = []
    for out in map(Path, outs):
        if out.is_dir():
            raise InvalidInput(f"{option} {out} is an existing folder, not a file name",
                               f"give a file name, e.g. {out / 'prediction.tif'}")
        st = _stat(out)
        hit = resolved.get(out.resolve()) or (inodes.get((st.st_dev, st.st_ino)) if st is not None else None)
        if hit is not None:
            raise InvalidInput(f"{option} {out} is the input {hit}: writing it would overwrite the input",
                               "give the output another file name or folder")
        parent = next((p for p in out.absolute().parents if p.exists()), None)
        if parent is not None and not parent.is_dir():
            raise InvalidInput(f"{option} {out} is inside {parent}, which is a file", "give a path in a folder")
        checked.append(out)
    return checked


def _stat(path: Path) -> os.stat_result | None:
    try:
        return path.stat()
    except OSError:
        return None


def work_files(folder: Path, finals: Iterable[str] | None = None) -> list[Path]:
    """The hidden work files of earlier runs in ``folder`` (:data:`WORK_FILE_RES`), for ``finals`` names only
    when given. Not recursive: each writer sweeps the folder it writes into."""
    names = set(finals) if finals is not None else None
    found = []
    for p in folder.glob(".*") if folder.is_dir() else ():
        m = next((m for r in WORK_FILE_RES if (m := r.match(p.name))), None)
        if m and p.is_file() and (names is None or m.group("final") in names):
            found.append(p)
    return sorted(found)


def sweep(folder: str | os.PathLike[str], finals: Iterable[str] | None = None) -> list[Path]:
    """Remove what killed runs left in ``folder`` (their temp and scratch files); returns what went.

    Only a run that owns the folder may call this (:func:`output_set` holds its lock), or one whose
    outputs are ``finals``: another live run's temp files would otherwise vanish under it.
    """
    gone = work_files(Path(folder), finals)
    for p in gone:
        p.unlink(missing_ok=True)
    return gone


@contextlib.contextmanager
def sigterm_cleanup() -> Iterator[None]:
    """Turn SIGTERM into ``SystemExit(143)`` for the block, so ``finally`` clauses remove temp files.

    Python's default for SIGTERM is to die at once, like SIGKILL: every scratch and temp file stays.
    Only the main thread can install a handler; elsewhere (a worker thread) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class OutputSet:
    """The files one run publishes into its folder, added as they are written."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.files: list[Path] = []

    def add(self, *paths: str | os.PathLike[str]) -> None:
        for p in paths:
            if Path(p) not in self.files:
                self.files.append(Path(p))


def _stamp(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


def _earlier_files(folder: Path) -> list[Path]:
    """The files the folder's previous complete manifest listed (the earlier run's set), if any."""
    try:
        doc = json.loads((folder / SET_MANIFEST).read_text(encoding="utf-8"))
        return [folder / rel for rel in doc.get("files", {}) if ".." not in Path(rel).parts]
    except (OSError, ValueError, AttributeError):
        return []


def _entries(folder: Path) -> dict[str, tuple[int, int]]:
    """Size and mtime of each visible entry but the manifest. Every write here is a rename into a folder,
    which changes that folder's mtime too, so this also sees a write into a subfolder (trend's COGs)."""
    out = {}
    for e in os.scandir(folder):
        if not e.name.startswith(".") and e.name != SET_MANIFEST:
            st = e.stat()
            out[e.name] = (int(st.st_size), int(st.st_mtime_ns))
    return out


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """``flock`` on the folder itself: one run per folder, and no lock file left behind in it."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            raise InvalidInput(f"Another flair-viz run is writing into {folder}",
                               "wait for it to finish, or give another output folder") from None
        yield
    finally:
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def output_set(folder: str | os.PathLike[str], command: str, keep_earlier: bool = False) -> Iterator[OutputSet]:
    """Publish what the block writes into ``folder`` as one set (see the module docstring).

    On entry: the folder is locked for this run, the work files of killed runs are swept, and the
    manifest says the folder is being rewritten. On a clean exit: files of the earlier set that this
    run did not write again are removed (a ``regions.csv`` from a run with ``--regions`` must not sit
    beside a summary without regions) unless ``keep_earlier`` (``predict --out`` adds scenes to a
    folder), then the manifest lists the new set. On an error or a kill it keeps saying "incomplete".
    """
    folder = output_folder(folder)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / SET_MANIFEST
    with _folder_lock(folder):
        sweep(folder)
        earlier = _earlier_files(folder)
        previous = manifest.read_bytes() if manifest.is_file() else None
        untouched = _entries(folder)
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        write_text(manifest, json.dumps({
            "complete": False, "command": command, "started": started,
            "note": "a run is writing this folder, or was interrupted: its files may mix two runs; rerun the "
                    "command"}, indent=1) + "\n")
        outputs = OutputSet(folder)
        try:
            yield outputs
        except BaseException:  # SIGTERM's SystemExit included
            if _entries(folder) == untouched:  # failed before writing anything: the folder is as it was
                if previous is None:
                    manifest.unlink(missing_ok=True)
                else:
                    write_bytes(manifest, previous)
                if created:
                    with contextlib.suppress(OSError):  # not empty: someone else wrote there meanwhile
                        folder.rmdir()
            raise
        kept = {p.resolve() for p in outputs.files}
        for old in earlier if not keep_earlier else ():
            if old.resolve() not in kept and old.is_file():
                old.unlink()
                if old.parent != folder:
                    with contextlib.suppress(OSError):  # a per-interval subfolder, removed once empty
                        old.parent.rmdir()
        files = {p.resolve().relative_to(folder).as_posix(): _stamp(p) for p in outputs.files}
        write_text(manifest, json.dumps({
            "complete": True, "command": command, "started": started,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "files": files}, indent=1) + "\n")


def check_set(folder: str | os.PathLike[str]) -> list[Path]:
    """The files of the complete set in ``folder``, or an error saying why the folder is not one.

    What a reader of a ``change``/``trend``/``predict --out`` folder calls before trusting it.
    """
    folder = Path(folder)
    rerun = "rerun the command that writes this folder"
    try:
        doc = json.loads((folder / SET_MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInput(f"{folder} has no {SET_MANIFEST}: it was not written as one set by flair-viz",
                           rerun) from None
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"{folder / SET_MANIFEST} cannot be read ({exc})", rerun) from None
    if not doc.get("complete"):
        raise InvalidInput(f"{folder} is incomplete: its run started at {doc.get('started')} and did not finish, "
                           "so its files may mix two runs", rerun)
    files = []
    for rel, stamp in doc.get("files", {}).items():
        p = folder / rel
        if not p.is_file() or _stamp(p) != stamp:
            raise InvalidInput(f"{p} changed or went missing after its run finished, so {folder} is no longer the "
                               "set that run wrote", rerun)
        files.append(p)
    return files
