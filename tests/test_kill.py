"""SIGKILL in the middle of a write: the previous output stays valid and nothing partial takes its name.

Real processes, real timing: each run is killed while its temp file (``.<name>.*.partial*``, from
:mod:`flair_viz.atomic`) exists. Covered elsewhere, not repeated here: the annotation export and the
selections store under SIGKILL (``tests/test_annotation.py``), and the GPU out-of-memory back-off
that halves the batch and gives an identical result (``tests/test_inference.py``).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import rasterio

from flair_viz.cli.main import main
from flair_viz.core import atomic
from tests.helpers import kill_while_present, sparse_class_raster, write_tif
from tests.model_fixtures import make_model


def read_all(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read()


def visible_names(folder: Path) -> set[str]:
    """What a user sees: temp files are hidden dot-files; only complete outputs carry a final name."""
    return {p.name for p in folder.iterdir() if not p.name.startswith(".")}


def test_predict_killed_mid_write_keeps_the_previous_output(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    make_model(models, "tiny", "safetensors")
    rng = np.random.default_rng(11)
    image = write_tif(tmp_path / "scene.tif", rng.integers(0, 255, (5, 1024, 1024), dtype=np.uint8), block=256)
    out, proba = tmp_path / "out" / "pred.tif", tmp_path / "out" / "proba.tif"
    # earlier results under the final names
    write_tif(out, np.full((64, 64), 7, np.uint8))
    write_tif(proba, rng.integers(0, 255, (19, 64, 64), dtype=np.uint8))
    before = {p: (p.read_bytes(), read_all(p)) for p in (out, proba)}

    env = {**os.environ, "FLAIR_VIZ_MODELS": str(models), "FLAIR_VIZ_DEVICE": "cpu", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "flair_viz", "predict", "--model", "tiny", str(image), str(out), "--proba", str(proba),
           "--quiet"]
    # the class COG is replaced first, then the 19-band probability COG is written (~0.6 s): kill inside that
    kill_while_present(cmd, out.parent, ".proba.tif.*partial*", env, delay=0.05)  # well inside the write

    assert proba.read_bytes() == before[proba][0]
    np.testing.assert_array_equal(read_all(proba), before[proba][1])
    # the class output was already complete: it is the new prediction, whole and readable
    new = read_all(out)
    assert new.shape == (1, 1024, 1024) and set(np.unique(new)) <= set(range(1, 20))
    assert visible_names(out.parent) == {"pred.tif", "proba.tif"}


def test_change_killed_mid_write_keeps_the_previous_outputs(tmp_path, capsys):
    rng = np.random.default_rng(12)
    out = tmp_path / "change out"
    # an earlier run on a small pair leaves the change and flow COGs with their QGIS styles, from_to.csv, summary.json
    a = write_tif(tmp_path / "a.tif", rng.integers(1, 20, (64, 64), dtype=np.uint8))
    b = write_tif(tmp_path / "b.tif", rng.integers(1, 20, (64, 64), dtype=np.uint8))
    assert main(["change", str(a), str(b), "--out", str(out)]) == 0
    capsys.readouterr()
    finals = sorted(p for p in out.iterdir() if p.name != atomic.SET_MANIFEST)
    outputs = {"change.tif", "change.qml", "flow.tif", "flow.qml", "from_to.csv", "summary.json"}
    assert {p.name for p in finals} == outputs
    before = {p: p.read_bytes() for p in finals}
    earlier_cog = read_all(out / "change.tif")

    # a big pair: counting takes a second or two, then the 8192² change COG is written (~0.4 s)
    cells = [(int(r), int(c)) for r, c in rng.integers(0, 16, (40, 2))]
    big_a = sparse_class_raster(tmp_path / "big_a.tif", 8192, [(r, c, 5) for r, c in cells])
    big_b = sparse_class_raster(tmp_path / "big_b.tif", 8192, [(r, c, 1) for r, c in cells])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "flair_viz", "change", str(big_a), str(big_b), "--out", str(out)]
    kill_while_present(cmd, out, ".change.tif.*partial*", env, delay=0.03)

    for p, data in before.items():
        assert p.read_bytes() == data, p.name
    np.testing.assert_array_equal(read_all(out / "change.tif"), earlier_cog)
    # every earlier output byte for byte (above), nothing half-written beside, and the folder says it is not one set
    assert visible_names(out) == outputs | {atomic.SET_MANIFEST}
    assert json.loads((out / atomic.SET_MANIFEST).read_text(encoding="utf-8"))["complete"] is False
