"""Batch outputs never depend on registering them: ``predict --out`` outside the catalog's data root writes
everything and says how to register it; ``--outside-root`` registers it; under the root it is registered.

Real runs of the demo model on the demo patches, on a copy of ``data/demo`` (the repository's catalog is
never touched), through one single-worker Dask cluster shared by the module.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tomllib
from pathlib import Path

import pytest
import rasterio

from flair_viz.cli import main as cli
from flair_viz.core import jobs
from flair_viz.core.catalog import Catalog
from tests.helpers import DEMO

MODEL, MOSAIC = "demo-unet-r18", "MOSAIC_demo-unet-r18"
PATCHES = sorted(p.stem.split("_", 1)[1] for p in (DEMO / "flair").glob("**/img/IMG_*.tif"))


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """A copy of data/demo: its catalog, whose data root is the copy."""
    root = tmp_path_factory.mktemp("outside") / "demo"
    shutil.copytree(DEMO, root)
    return root


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("FLAIR_VIZ_DATA", str(tmp_path_factory.mktemp("user")))  # workers inherit the environment at spawn
    client = jobs.get_client(workers=1)
    yield client.scheduler.address
    jobs.close_client(client)
    mp.undo()


def predict(demo: Path, scheduler: str, out: Path, *extra: str) -> tuple[int, str, str]:
    """``flair-viz predict --out OUT`` on the copy's patches; returns the exit code, stdout and stderr."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        rc = cli.main(["predict", "--model", MODEL, "--device", "cpu", "--scheduler", scheduler, "--out", str(out),
                       "--catalog", str(demo / "catalog.toml"), "--quiet", *extra, str(demo / "flair")])
    return rc, stdout.getvalue(), stderr.getvalue()


@pytest.fixture(scope="module")
def outside(demo, scheduler, tmp_path_factory):
    """One run with --out outside the data root, and the catalog's bytes before and after it."""
    out = (tmp_path_factory.mktemp("elsewhere") / "preds").resolve()
    before = (demo / "catalog.toml").read_bytes()
    rc, stdout, stderr = predict(demo, scheduler, out)
    return {"out": out, "rc": rc, "stdout": stdout, "stderr": stderr, "before": before,
            "after": (demo / "catalog.toml").read_bytes()}


def test_outside_root_writes_every_output_and_says_how_to_register(outside, demo):
    out, err = outside["out"], outside["stderr"]
    assert outside["rc"] == 0, err
    assert not out.is_relative_to(demo)
    for pid in PATCHES:
        with rasterio.open(out / f"PRED_{pid}.tif") as ds:
            assert ds.count == 1 and ds.read(1).any()
        assert (out / f"PRED_{pid}.tif.manifest.json").is_file()
    vrt = out / f"{MOSAIC}.vrt"
    with rasterio.open(vrt) as ds:
        assert ds.count == 1 and ds.crs is not None
    assert outside["after"] == outside["before"]  # nothing registered, the catalog untouched
    assert "Traceback" not in err and "error:" not in err
    assert f"note: {vrt} is outside the data root {demo.resolve()}" in err and "--outside-root" in err
    # the note's entry is valid TOML naming the exact ID and path
    entry = tomllib.loads(err.split(f"add this entry to {demo / 'catalog.toml'}:\n", 1)[1])
    assert entry == {"dataset": [{"id": MOSAIC, "path": str(vrt), "role": "prediction", "outside_root": True}]}


def test_rerun_with_outside_root_registers_without_predicting_again(outside, demo, scheduler):
    assert outside["rc"] == 0
    rc, stdout, stderr = predict(demo, scheduler, outside["out"], "--outside-root")
    assert rc == 0, stderr
    assert f"0 predicted, {len(PATCHES)} already done" in stdout and f"registered as {MOSAIC}" in stdout
    assert "note:" not in stderr
    cat = Catalog.load(demo / "catalog.toml")
    ds = cat.get(MOSAIC)
    assert ds.path == outside["out"] / f"{MOSAIC}.vrt" and ds.outside_root
    assert {p: cat.get(f"PRED_{p}_{MODEL}").path for p in PATCHES} == \
        {p: outside["out"] / f"PRED_{p}.tif" for p in PATCHES}


def test_under_the_root_is_registered_as_before(demo, scheduler):
    out = demo / "preds"
    rc, stdout, stderr = predict(demo, scheduler, out)
    assert rc == 0, stderr
    assert f"{len(PATCHES)} predicted" in stdout and f"registered as {MOSAIC}" in stdout and "note:" not in stderr
    ds = Catalog.load(demo / "catalog.toml").get(MOSAIC)
    assert ds.path == (out / f"{MOSAIC}.vrt").resolve() and not ds.outside_root
    assert f'path = "preds/{MOSAIC}.vrt"' in (demo / "catalog.toml").read_text(encoding="utf-8")


def test_broken_catalog_is_still_an_error_before_any_work(tmp_path, scheduler):
    broken = tmp_path / "catalog.toml"
    broken.write_text('data_root = "."\n[[dataset]\n', encoding="utf-8")
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        rc = cli.main(["predict", "--model", MODEL, "--scheduler", scheduler, "--out", str(tmp_path / "preds"),
                       "--catalog", str(broken), "--quiet", str(DEMO / "flair")])
    assert rc == 2 and "error:" in stderr.getvalue() and "fix:" in stderr.getvalue()
    assert not (tmp_path / "preds").exists()
