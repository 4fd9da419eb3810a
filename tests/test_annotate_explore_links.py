"""Explore's deep links and filters, now library code (flair_viz.web.explore), checked without Streamlit."""

from __future__ import annotations

from flair_viz.core.catalog import Catalog
from flair_viz.web import explore
from tests.helpers import DEMO_CATALOG, filter_options, filter_scenes


def test_a_story_link_sets_the_widgets_and_stays_until_another_patch() -> None:
    state: dict = {"explore": {"patch": "034217", "model": "m1", "preset": "irc", "live_layer": "entropy"}}
    link = explore.take_deep_link(state, {"patch": "ignored"})
    assert "explore" not in state  # consumed once
    assert state["explore_models"] == ["m1"] and state["explore_preset"] == "irc" and state["explore_live"] == "entropy"
    assert link is state["explore_link"] and link["patch"] == "034217"
    # the next rerun finds the same link; the query string does not replace it
    assert explore.take_deep_link(state, {"patch": "000473"}) is link
    assert explore.keep_link_for(state, link, "IMG_034217") is link and link["scene"] == "IMG_034217"
    assert explore.keep_link_for(state, link, "IMG_034217")["model"] == "m1"
    other = explore.keep_link_for(state, link, "IMG_000473")  # the analyst picked another patch
    assert other == {"scene": "IMG_000473"} and state["explore_link"] is other


def test_query_patch_is_a_link_only_when_no_link_exists() -> None:
    state: dict = {}
    assert explore.take_deep_link(state, {"patch": "050549"}) == {"patch": "050549"}
    assert explore.take_deep_link({}, {}) == {}


def test_model_defaults_follow_the_link_and_drop_unknown_models() -> None:
    known = ["a", "b"]
    assert explore.model_defaults({}, {"model": "b"}, known) == ["b"]
    assert explore.model_defaults({}, {"model": "gone"}, known) == ["a"]
    assert explore.model_defaults({}, {}, []) == []
    state = {"explore_models": ["gone", "b"]}
    assert explore.model_defaults(state, {}, known) is None and state["explore_models"] == ["b"]


def test_filters_match_the_demo_catalogs_domains_zones_and_years() -> None:
    cat = Catalog.load(DEMO_CATALOG)
    scenes = explore.list_scenes(cat)
    domains, zones, years = filter_options(scenes)
    assert years == sorted({d.vintage[:4] for d in cat.by_role("image") if d.vintage})  # read from the catalog itself
    assert {"2019", "2020", "2021"} <= set(years)
    assert domains == sorted({s.domain for s in scenes if s.domain}) and len(domains) >= 2
    d = domains[0]
    _, zones_d, _ = filter_options(scenes, [d])
    assert set(zones_d) == {s.zone for s in scenes if s.domain == d and s.zone} and set(zones_d) <= set(zones)
    in_2020 = filter_scenes(scenes, years=["2020"])
    assert len(in_2020) == 2 and all(s.image.vintage.startswith("2020") for s in in_2020)
    assert filter_scenes(scenes, domains=[d], years=["1900"]) == scenes  # nothing matches: show all


def test_confusion_caption_names_classes_only_in_full_numbering() -> None:
    assert explore.confusion_caption({}) is None
    full = explore.confusion_caption({"confusion": [3, 2]})
    assert full.startswith("Confusion highlight: pixels whose truth is class 3 and prediction class 2 (full numbering).")
    assert "→" in full
    flair1 = explore.confusion_caption({"confusion": [3, 2], "protocol": "flair1"})
    assert flair1.endswith("(flair1 numbering).")


def test_what_the_explore_and_annotate_pages_import_never_loads_torch() -> None:
    """The tile server predicts; the UI process must stay torch-free (it would take seconds and GBs)."""
    import subprocess
    import sys

    from tests.helpers import REPO

    code = ("import sys; import ui.common, ui.launch, flair_viz.web.explore, flair_viz.web.annotate, "
            "flair_viz.web.maps, flair_viz.annotate, flair_viz.annotate.selections; ui.launch.warm_imports(); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"
