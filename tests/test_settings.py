"""Settings: one table (core/config.py), one README table, and values instead of environment writes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from flair_viz.core import config
from flair_viz.core.errors import Misconfigured, UnknownModel
from flair_viz.predict import cards
from tests.helpers import REPO
from tests.model_fixtures import write_card

NAME = re.compile(r"FLAIR_VIZ_[A-Z0-9_]*[A-Z0-9]")
SOURCES = ("flair_viz", "ui", "pages", "scripts", "benchmarks", "tests", "app.py")


def names_in_sources() -> dict[str, str]:
    """Every FLAIR_VIZ_* name written in the code, scripts and tests, with one file that names it."""
    found: dict[str, str] = {}
    for top in SOURCES:
        root = REPO / top
        files = [root] if root.is_file() else [*root.rglob("*.py"), *root.rglob("*.sh")]
        for f in files:
            for name in NAME.findall(f.read_text(encoding="utf-8")):
                found.setdefault(name, str(f.relative_to(REPO)))
    return found


def readme_table() -> dict[str, str]:
    """The README's Configuration table: variable → default column."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    return {m.group(1): m.group(2).strip() for m in re.finditer(r"^\| `(FLAIR_VIZ_\w+)` \|([^|]*)\|", section, re.M)}


def test_every_variable_the_code_reads_is_in_the_readme_table():
    used = names_in_sources()
    assert len(used) >= len(fields(config.Settings))  # the grep found the names (not an empty walk)
    assert {n: f for n, f in used.items() if n not in readme_table()} == {}


def test_the_settings_table_and_the_readme_table_list_the_same_library_variables():
    """Every Settings field has a README row, and every name the library itself mentions is a Settings field."""
    table = {f.metadata["env"] for f in fields(config.Settings)}
    library = {n for n, f in names_in_sources().items() if f.startswith("flair_viz/")}
    assert table - set(readme_table()) == set()
    assert library - table == set()
    assert all(f.metadata["why"] for f in fields(config.Settings))


def test_defaults_when_nothing_is_set(monkeypatch):
    for f in fields(config.Settings):
        monkeypatch.delenv(f.metadata["env"], raising=False)
    s = config.settings()
    assert s == config.Settings()
    assert (s.engine, s.tile_port, s.region_mpx, s.viewport_hint, s.int8_build, s.ort_arena) == \
        ("auto", 8765, 3.0, True, True, False)
    assert config.tile_server_url() == "http://127.0.0.1:8765"
    assert config.catalog_path() == REPO / "data" / "demo" / "catalog.toml"
    assert readme_table()["FLAIR_VIZ_TILE_PORT"] == f"`{s.tile_port}`"  # the README states the same defaults
    assert readme_table()["FLAIR_VIZ_REGION_MPX"] == f"`{s.region_mpx:g}`"


def test_values_are_parsed_by_type_and_empty_means_unset(monkeypatch, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    monkeypatch.setenv("FLAIR_VIZ_MODELS", f"{a}{os.pathsep}{b}{os.pathsep}")
    monkeypatch.setenv("FLAIR_VIZ_REGION_MPX", "0.5")
    monkeypatch.setenv("FLAIR_VIZ_TILE_PORT", "9123")
    monkeypatch.setenv("FLAIR_VIZ_VIEWPORT_HINT", "0")
    monkeypatch.setenv("FLAIR_VIZ_ORT_ARENA", "1")
    monkeypatch.setenv("FLAIR_VIZ_ENGINE", "")
    s = config.settings()
    assert s.models == (a, b) and s.region_mpx == 0.5 and s.tile_port == 9123
    assert s.viewport_hint is False and s.ort_arena is True and s.engine == "auto"
    assert config.tile_server_url() == "http://127.0.0.1:9123"


@pytest.mark.parametrize(("name", "value"), [("FLAIR_VIZ_TILE_PORT", "87x5"), ("FLAIR_VIZ_VIEWPORT_HINT", "O"),
                                             ("FLAIR_VIZ_REGION_MPX", "three")])
def test_a_value_that_does_not_parse_is_misconfigured_naming_the_variable(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(Misconfigured) as err:
        config.settings()
    assert name in err.value.problem and repr(value) in err.value.problem and name in err.value.fix


def test_serve_exports_its_options_for_worker_processes(monkeypatch, tmp_path):
    """uvicorn's workers are fresh processes: what export_for_workers writes is what a new process reads."""
    for var in ("FLAIR_VIZ_CATALOG", "FLAIR_VIZ_TOKEN", "FLAIR_VIZ_ENGINE", "FLAIR_VIZ_VIEWPORT_HINT"):
        monkeypatch.setenv(var, "")  # recorded, so the writes below are undone after the test
        monkeypatch.delenv(var)
    catalog = tmp_path / "my.toml"
    config.export_for_workers(catalog, "s3cret", "onnx", workers=2)
    code = "from flair_viz.core import config\ns = config.settings()\nprint(s.catalog, s.token, s.engine, s.viewport_hint)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=config.child_environment(), capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(catalog.resolve()), "s3cret", "onnx", "False"]


def test_an_operators_viewport_hint_is_kept_and_one_worker_keeps_hints(monkeypatch):
    monkeypatch.setenv("FLAIR_VIZ_VIEWPORT_HINT", "1")
    config.export_for_workers(None, None, None, workers=4)
    assert config.settings().viewport_hint is True
    monkeypatch.delenv("FLAIR_VIZ_VIEWPORT_HINT")
    config.export_for_workers(None, None, None, workers=1)
    assert "FLAIR_VIZ_VIEWPORT_HINT" not in os.environ and config.settings().viewport_hint is True


def test_child_environment_overrides_by_setting_name_and_leaves_this_process_alone(monkeypatch):
    monkeypatch.setenv("FLAIR_VIZ_INT8_BUILD", "1")
    env = config.child_environment(onnx_build_here=True, int8_build=False)
    assert (env["FLAIR_VIZ_ONNX_BUILD_HERE"], env["FLAIR_VIZ_INT8_BUILD"]) == ("1", "0")
    assert os.environ["FLAIR_VIZ_INT8_BUILD"] == "1" and config.settings().onnx_build_here is False


def test_a_models_dir_is_passed_as_a_value_not_through_the_environment(monkeypatch, tmp_path):
    """`corrections compare --models-dir` finds a card in that folder without setting $FLAIR_VIZ_MODELS."""
    monkeypatch.delenv("FLAIR_VIZ_MODELS", raising=False)
    folder = tmp_path / "fine-tuned"
    folder.mkdir()
    card_path = write_card(folder, "only-here", "w.pth")
    assert cards.get_card("only-here", [folder]).card_path.resolve() == card_path.resolve()
    assert "FLAIR_VIZ_MODELS" not in os.environ
    with pytest.raises(UnknownModel, match="Unknown model .only-here."):
        cards.get_card("only-here")
    assert cards.model_dirs([folder])[0] == Path(folder)
