"""Catalog edits through the one TOML writer: every case that lost an entry or broke the file before.

Each catalog is real TOML over real GeoTIFFs in FLAIR layout. What a catalog should hold is computed
from the files the test wrote (``IMG_*``/``MSK_*`` names on disk), never from the index or the writer.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest

from flair_viz.cli.main import main
from flair_viz.core import catalog_file, vrt
from flair_viz.core.catalog import Catalog
from flair_viz.core.errors import InvalidCatalog
from flair_viz.core.scenes import Scene
from flair_viz.predict.cards import ModelCard
from flair_viz.predict.register import register_mosaic
from tests.helpers import write_tif
from tests.test_catalog_index import RES, SIDE, X0, Y0, N, grid_tree

USER = ('# My catalog: notes a person wrote.\ndata_root = "data"\nattribution = "me"\n\n'
        '# my own scene\n[[dataset]]\nid = "MY_SCENE"\npath = "scene.tif"  # keep this comment\nrole = "image"\n')


def patch_ids(folder: Path) -> set[str]:
    """The IDs a scan must register for a FLAIR tree, from the file names on disk."""
    return {p.stem for p in folder.rglob("IMG_*.tif")} | {p.stem for p in folder.rglob("MSK_*.tif")}


def scan(folder: Path, cat: Path, capsys) -> int:
    rc = main(["catalog", "scan", str(folder), "--catalog", str(cat)])
    capsys.readouterr()
    return rc


@pytest.fixture()
def two_folders(tmp_path) -> tuple[Path, Path, Path]:
    """(catalog file, folder a, folder b): two small FLAIR trees under the data root and a scene."""
    data = tmp_path / "data"
    grid_tree(data / "a", 1, 2, zone="Z1_AA")
    grid_tree(data / "b", 1, 2, zone="Z2_BB", first=10, seed=1)
    write_tif(data / "scene.tif", np.ones((5, N, N), np.uint8))
    return tmp_path / "catalog.toml", data / "a", data / "b"


def test_a_scan_after_a_scan_table_adds_its_folder(two_folders, capsys):
    cat, a, b = two_folders
    cat.write_text(USER + '\n[[scan]]\npath = "a"  # folder a\n', encoding="utf-8")
    assert scan(b, cat, capsys) == 0
    ids = {d.id for d in Catalog.load(cat)}
    assert patch_ids(a) | patch_ids(b) | {"MY_SCENE"} <= ids


def test_a_scan_after_a_plain_dataset_table_and_rescans_keep_one_entry_per_folder(two_folders, capsys):
    cat, a, b = two_folders
    cat.write_text(USER, encoding="utf-8")
    for folder in (a, b, a, b):  # a second folder, then a second scan of each: replaced, never duplicated
        assert scan(folder, cat, capsys) == 0
    text = cat.read_text(encoding="utf-8")
    doc = tomllib.loads(text)
    assert sorted(e["folder"] for e in doc["index"]) == ["a", "b"]
    assert text.startswith(USER)  # the user's lines, comments and order untouched
    ids = {d.id for d in Catalog.load(cat)}
    assert patch_ids(a) | patch_ids(b) | {"MY_SCENE"} <= ids


def card(model: str = "tiny") -> ModelCard:
    return ModelCard(id=model, arch="Unet", encoder="resnet18", in_bands=("R", "G", "B", "NIR", "elevation"),
                     mean=(0.0,) * 5, std=(1.0,) * 5, classes=19, nomenclature="flair1", card_path=Path("card.toml"))


def predictions(out: Path, pids: list[str]) -> tuple[Path, list[tuple[Scene, Path]]]:
    """Real class COGs for patches of grid_tree's zone Z9_AA and their batch VRT, as predict --out leaves them."""
    outputs = []
    for k, pid in enumerate(pids):
        path = write_tif(out / f"PRED_{pid}.tif", np.full((N, N), 3, np.uint8), origin=(X0 + k * SIDE, Y0), res=RES)
        outputs.append((Scene(pid, path, patch=pid, domain="D034_2021", zone="Z9_AA", vintage="2021"), path))
    return vrt.write_vrt([p for _, p in outputs], out / "MOSAIC_tiny.vrt"), outputs


def test_a_scan_after_a_predict_registration_and_a_rerun_of_predict(two_folders, capsys):
    cat, a, b = two_folders
    cat.write_text(USER, encoding="utf-8")
    out = cat.parent / "data" / "preds"
    mosaic, outputs = predictions(out, ["000001", "000002", "000003"])
    register_mosaic(cat, mosaic, card(), outputs)
    assert scan(a, cat, capsys) == 0  # the last table is the registered block
    loaded = Catalog.load(cat)
    registered = {"MOSAIC_tiny", "PRED_000001_tiny", "PRED_000002_tiny", "PRED_000003_tiny", "ZONE_D034_2021_Z9_AA_PRED_tiny"}
    assert patch_ids(a) | registered | {"MY_SCENE"} <= {d.id for d in loaded}
    assert loaded.get("PRED_000002_tiny").path == (out / "PRED_000002.tif").resolve()
    mosaic, outputs = predictions(out, ["000001", "000002"])  # a rerun on fewer scenes replaces the set
    register_mosaic(cat, mosaic, card(), outputs)
    ids = {d.id for d in Catalog.load(cat)}
    assert "PRED_000003_tiny" not in ids and {"PRED_000001_tiny", "PRED_000002_tiny", "MOSAIC_tiny"} <= ids
    assert patch_ids(a) | {"MY_SCENE"} <= ids
    text = cat.read_text(encoding="utf-8")
    assert text.startswith(USER) and text.count('id = "MOSAIC_tiny"') == 1


OLD = """# notes
data_root = "data"

# --- BEGIN index a (written by flair-viz catalog scan; do not edit by hand) ---
index = [
    { path = "catalog.index/a.parquet", folder = "a" },
]
# --- END index a ---

# --- BEGIN batch MOSAIC_tiny (written by flair-viz predict; do not edit by hand) ---
[[dataset]]
id = "MOSAIC_tiny"
path = "scene.tif"
role = "image"

[dataset.extra]
model = "tiny"
made_by = "flair-viz predict"
# --- BEGIN index b (written by flair-viz catalog scan; do not edit by hand) ---
index = [
    { path = "catalog.index/b.parquet", folder = "b" },
]
# --- END index b ---
# --- END batch MOSAIC_tiny ---
"""


def test_an_old_catalog_with_marked_blocks_loads_and_its_lost_index_comes_back(two_folders, capsys):
    """What earlier versions wrote after `scan a; predict; scan b`: b's line landed in the last [dataset.extra]."""
    cat, a, b = two_folders
    cat.write_text(USER, encoding="utf-8")
    assert scan(a, cat, capsys) == 0 and scan(b, cat, capsys) == 0  # writes both Parquet indexes
    cat.write_text(OLD, encoding="utf-8")
    before = {d.id for d in Catalog.load(cat)}
    assert patch_ids(a) | {"MOSAIC_tiny"} <= before and not patch_ids(b) & before  # the old loss, reproduced
    assert scan(a, cat, capsys) == 0
    text = cat.read_text(encoding="utf-8")
    assert "--- BEGIN" not in text and "--- END" not in text  # the markers named blocks that are gone
    assert text.startswith("# notes\n") and "made_by" in text
    assert sorted(e["folder"] for e in tomllib.loads(text)["index"]) == ["a", "b"]
    assert patch_ids(a) | patch_ids(b) | {"MOSAIC_tiny"} <= {d.id for d in Catalog.load(cat)}


def test_an_edit_that_would_not_load_leaves_the_file_as_it_was_and_names_it(two_folders):
    cat, _, _ = two_folders
    cat.write_text(USER, encoding="utf-8")
    before = cat.read_bytes()
    with pytest.raises(InvalidCatalog) as err:
        catalog_file.upsert(cat, "dataset", [{"id": "BAD", "path": "scene.tif", "role": "landcover"}])
    assert "catalog.toml was left unchanged" in err.value.problem and "landcover" in err.value.problem
    assert ".partial" not in err.value.message and err.value.fix
    assert cat.read_bytes() == before
    assert sorted(p.name for p in cat.parent.iterdir() if p.name.startswith(".catalog.toml.")) == [".catalog.toml.lock"]


def test_two_datasets_with_one_id_are_an_error_naming_both(two_folders, capsys):
    cat, a, _ = two_folders
    cat.write_text(USER + '\n[[dataset]]\nid = "MY_SCENE"\npath = "other.tif"\nrole = "image"\n', encoding="utf-8")
    with pytest.raises(InvalidCatalog, match="MY_SCENE") as err:
        Catalog.load(cat)
    assert "'scene.tif'" in err.value.problem and "'other.tif'" in err.value.problem and err.value.fix
    assert main(["catalog", "validate", "--catalog", str(cat)]) == 2
    stderr = capsys.readouterr().err
    assert "scene.tif" in stderr and "other.tif" in stderr and "fix:" in stderr and "Traceback" not in stderr


def test_a_dataset_reusing_a_scanned_patch_id_is_an_error_naming_both(two_folders, capsys):
    cat, a, _ = two_folders
    img = sorted(a.rglob("IMG_*.tif"))[0]
    cat.write_text(f'data_root = "data"\n[[scan]]\npath = "a"\n\n[[dataset]]\nid = "{img.stem}"\n'
                   'path = "scene.tif"\nrole = "image"\n', encoding="utf-8")
    assert main(["catalog", "validate", "--catalog", str(cat)]) == 2
    stderr = capsys.readouterr().err
    assert img.stem in stderr and str(img.relative_to(a.parent)) in stderr and "scene.tif" in stderr


@pytest.mark.parametrize("command", ["list", "validate", "scan"])
def test_catalog_naming_a_folder_is_a_clear_error(two_folders, capsys, command):
    cat, a, _ = two_folders
    argv = ["catalog", command, *([str(a)] if command == "scan" else []), "--catalog", str(a.parent)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "is a folder" in err and f"{a.parent / 'catalog.toml'}" in err and "fix:" in err
