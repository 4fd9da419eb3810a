"""Issue 22, part 4: multi-file outputs are published as one set, SIGTERM cleans up, reruns leave nothing behind.

The set is a completion manifest (``flair-viz-run.json``, :func:`flair_viz.core.atomic.output_set`):
"complete": false from the moment a run starts touching its folder, the list of files once it is done.
Kills and SIGTERMs hit real child processes while a real write is under way, as ``tests/test_kill.py`` does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
from shapely.geometry import box

from flair_viz.cli.main import main
from flair_viz.core import atomic
from flair_viz.core.errors import InvalidInput
from tests.helpers import REPO, kill_while_present, signal_while_present, sparse_class_raster, write_tif
from tests.model_fixtures import make_model

# The project's work-file names (atomic temps and COG scratches), by their shape, as a user would spot them.
WORK_FILE_GLOBS = (".*.partial*", ".*.scratch.tif*")


def work_files(folder: Path) -> list[Path]:
    return sorted({p for g in WORK_FILE_GLOBS for p in folder.rglob(g)})


def manifest(folder: Path) -> dict:
    return json.loads((folder / atomic.SET_MANIFEST).read_text(encoding="utf-8"))


def _small_pair(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(21)
    return (write_tif(tmp_path / "a.tif", rng.integers(1, 20, (64, 64)).astype(np.uint8)),
            write_tif(tmp_path / "b.tif", rng.integers(1, 20, (64, 64)).astype(np.uint8)))


def _big_pair(tmp_path: Path) -> tuple[Path, Path]:
    """An 8192² pair: a second or two of counting, then a change COG written long enough to be caught."""
    rng = np.random.default_rng(22)
    cells = [(int(r), int(c)) for r, c in rng.integers(0, 16, (40, 2))]
    return (sparse_class_raster(tmp_path / "big_a.tif", 8192, [(r, c, 5) for r, c in cells]),
            sparse_class_raster(tmp_path / "big_b.tif", 8192, [(r, c, 1) for r, c in cells]))


def no_catalog(tmp_path: Path) -> list[str]:
    """``--catalog`` naming a missing file: plain files only, whatever the default catalog holds."""
    return ["--catalog", str(tmp_path / "no-catalog.toml")]


def test_change_publishes_a_set_and_a_killed_rewrite_marks_the_folder_incomplete(tmp_path, capsys):
    a, b = _small_pair(tmp_path)
    out = tmp_path / "change out"
    assert main(["change", str(a), str(b), "--out", str(out), *no_catalog(tmp_path)]) == 0
    capsys.readouterr()
    visible = {p.name for p in out.iterdir() if not p.name.startswith(".")}
    assert visible == {"change.tif", "change.qml", "flow.tif", "flow.qml", "from_to.csv", "summary.json",
                       atomic.SET_MANIFEST}
    assert {p.name for p in atomic.check_set(out)} == visible - {atomic.SET_MANIFEST}
    assert manifest(out)["complete"] is True

    big_a, big_b = _big_pair(tmp_path)
    cmd = [sys.executable, "-m", "flair_viz", "change", str(big_a), str(big_b), "--out", str(out), *no_catalog(tmp_path)]
    kill_while_present(cmd, out, ".change.tif.*partial*", {**os.environ, "OMP_NUM_THREADS": "1"}, delay=0.03)
    doc = manifest(out)
    assert doc["complete"] is False and "rerun" in doc["note"]
    with pytest.raises(InvalidInput, match="incomplete: its run started at .* did not finish"):
        atomic.check_set(out)
    assert work_files(out)  # SIGKILL cannot be caught: the killed write's temp file is still there...

    (out / ".my notes.txt").write_text("mine", encoding="utf-8")  # a user's hidden files are never swept
    (out / ".change.tif.bak").write_bytes(b"mine too")
    assert main(["change", str(a), str(b), "--out", str(out), *no_catalog(tmp_path)]) == 0
    assert work_files(out) == []  # ...and the rerun removes it
    assert (out / ".my notes.txt").read_text(encoding="utf-8") == "mine"
    assert (out / ".change.tif.bak").read_bytes() == b"mine too"
    assert {p.name for p in atomic.check_set(out)} == visible - {atomic.SET_MANIFEST}


def test_a_file_changed_after_the_run_breaks_the_set(tmp_path, capsys):
    a, b = _small_pair(tmp_path)
    out = tmp_path / "o"
    assert main(["change", str(a), str(b), "--out", str(out), *no_catalog(tmp_path)]) == 0
    (out / "from_to.csv").write_text("edited", encoding="utf-8")
    with pytest.raises(InvalidInput, match="from_to.csv changed or went missing"):
        atomic.check_set(out)


def test_sigterm_during_change_removes_its_work_files(tmp_path):
    big_a, big_b = _big_pair(tmp_path)
    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "flair_viz", "change", str(big_a), str(big_b), "--out", str(out), *no_catalog(tmp_path)]
    rc = signal_while_present(cmd, out, ".change.tif.*", signal.SIGTERM, {**os.environ, "OMP_NUM_THREADS": "1"},
                              delay=0.03)
    assert rc == 128 + signal.SIGTERM  # exited through its cleanup, not killed by the signal
    assert not out.exists()  # no work file; nothing was published: not even the folder it created


def test_a_run_that_fails_before_writing_leaves_the_folder_as_it_was(tmp_path, capsys):
    a, b = _small_pair(tmp_path)
    out = tmp_path / "o"
    assert main(["change", str(a), str(b), "--out", str(out), *no_catalog(tmp_path)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    far = write_tif(tmp_path / "far.tif", np.ones((8, 8), np.uint8), origin=(100_000.0, 6_000_000.0))
    assert main(["change", str(a), str(far), "--out", str(out), *no_catalog(tmp_path)]) == 2
    assert "do not overlap" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the manifest still says complete
    assert atomic.check_set(out)


def test_predict_sigterm_cleans_up_and_a_rerun_removes_what_sigkill_left(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    make_model(models, "tiny", "safetensors")
    rng = np.random.default_rng(23)
    image = write_tif(tmp_path / "scene.tif", rng.integers(0, 255, (5, 1024, 1024), dtype=np.uint8), block=256)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "pred.tif"
    env = {**os.environ, "FLAIR_VIZ_MODELS": str(models), "FLAIR_VIZ_DEVICE": "cpu", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "flair_viz", "predict", "--model", "tiny", str(image), str(out), "--proba",
           str(out_dir / "proba.tif"), "--quiet"]

    rc = signal_while_present(cmd, out_dir, ".pred.tif.*.scratch.tif", signal.SIGTERM, env, delay=0.2)
    assert rc == 128 + signal.SIGTERM
    assert work_files(out_dir) == [] and list(out_dir.iterdir()) == []

    kill_while_present(cmd, out_dir, ".pred.tif.*.scratch.tif", env, delay=0.2)
    left = work_files(out_dir)
    assert left and all(p.name.startswith((".pred.tif.", ".proba.tif.")) for p in left)
    other = out_dir / ".other.tif.abcdefgh.partial.tif"  # another output's work file: not this run's to remove
    other.write_bytes(b"x")
    assert subprocess.run(cmd, cwd=REPO, env=env, capture_output=True).returncode == 0
    assert work_files(out_dir) == [other]
    assert {p.name for p in out_dir.iterdir() if not p.name.startswith(".")} == {"pred.tif", "proba.tif"}


def _series(tmp_path: Path, n: int = 3) -> list[Path]:
    rng = np.random.default_rng(24)
    return [write_tif(tmp_path / f"v{i}.tif", rng.integers(1, 20, (40, 40)).astype(np.uint8)) for i in range(n)]


def test_trend_rerun_replaces_the_earlier_set_whole(tmp_path, capsys):
    paths = _series(tmp_path)
    out = tmp_path / "trend"
    x0, y0 = 961436.8, 6329262.4
    regions = tmp_path / "regions.gpkg"
    gpd.GeoDataFrame({"name": ["A"]}, geometry=[box(x0, y0 - 4, x0 + 4, y0)], crs="EPSG:2154").to_file(regions)
    assert main(["trend", *map(str, paths), "--out", str(out), "--cogs", "--regions", str(regions), *no_catalog(tmp_path)]) == 0
    first = {p.relative_to(out).as_posix() for p in atomic.check_set(out)}
    assert {"trend.csv", "trend.json", "regions.gpkg"} <= first and sum(p.endswith("change.tif") for p in first) == 2

    assert main(["trend", *map(str, paths[:2]), "--out", str(out), *no_catalog(tmp_path)]) == 0  # no COGs, no regions
    assert {p.relative_to(out).as_posix() for p in atomic.check_set(out)} == {"trend.csv", "trend.json"}
    left = {p.relative_to(out).as_posix() for p in out.rglob("*")}
    assert left == {"trend.csv", "trend.json", atomic.SET_MANIFEST}  # the earlier set's files and folders went


def test_two_runs_into_one_folder_do_not_interleave(tmp_path):
    out = tmp_path / "o"
    with atomic.output_set(out, "first"):
        with pytest.raises(InvalidInput, match="Another flair-viz run is writing into"):
            with atomic.output_set(out, "second"):
                pass
    assert manifest(out)["complete"] is True and manifest(out)["command"] == "first"
