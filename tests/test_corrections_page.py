"""The Explore page's corrections panel (AppTest): the class picker, the stored corrections, the fine-tune button,
and the panel's pure helpers. Drawing and the whole loop are checked in tests/e2e/test_corrections_browser.py."""

from __future__ import annotations

import shapely
from streamlit.testing.v1 import AppTest

from flair_viz.core import raster
from flair_viz.core.catalog import default_catalog
from flair_viz.correct.store import CorrectionStore
from flair_viz.web import corrections as webcorr
from tests.helpers import REPO


def test_explore_paints_corrections_and_offers_the_fine_tune(tile_server):
    at = AppTest.from_file(str(REPO / "pages/1_Explore.py"), default_timeout=180)
    at.session_state["explore"] = {"patch": "084558"}
    at.run()
    assert not at.exception, at.exception
    at.toggle(key="explore_correct").set_value(True).run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert at.selectbox(key="corr_class").options[0].startswith("1 · ")
    assert any(s.value.startswith("Corrections (0 on this image") for s in at.subheader)
    assert at.button(key="corr_apply").disabled  # nothing to learn yet

    info = raster.describe(default_catalog().get("IMG_084558").path)
    x0, _, _, y1 = info.bounds
    CorrectionStore().add(shapely.box(x0 + 2, y1 - 12, x0 + 12, y1 - 2), 10, dataset_id="IMG_084558")
    at.run()
    assert any(s.value.startswith("Corrections (1 on this image") for s in at.subheader)
    assert not at.button(key="corr_apply").disabled


def test_panel_helpers():
    assert webcorr.palette() == list(range(1, 20))
    mid = webcorr.new_model_id("demo-unet-r18", now=0)
    assert mid == "demo-unet-r18-ft-19700101-000000"
    assert webcorr.progress_of({"state": "running", "epoch": 5, "epochs": 20, "loss": 0.5})[0] == 0.25
    text = webcorr.figure_text({"pixels": 200, "right_before": 10, "right_after": 150, "parent": "a", "model_id": "b"})
    assert "10 px (5.0 %)" in text and "150 px (75.0 %)" in text and "training pixels" in text
    rows = [{"model": m, "role": r, "pixels": p, "truth_pixels": 1, "overall_accuracy": 0.5, "miou": 0.1}
            for m, r in (("a", "parent"), ("b", "fine-tuned")) for p in ("fine-tuning pixels", "other pixels")]
    table = webcorr.evaluation_table(rows)
    assert table["pixels"].tolist()[:2] == ["other pixels", "other pixels"]  # scores first, training pixels apart


def test_metrics_page_lists_finished_fine_tunes_with_training_pixels_apart(_isolated_user_data, tile_server):
    """The job's own evaluation is shown on Metrics; a job whose card was deleted, or one still running, is not."""
    import json

    from flair_viz.correct import jobs
    from tests.model_fixtures import write_card

    models = _isolated_user_data / "models"
    models.mkdir(exist_ok=True)
    write_card(models, "demo-ft-kept", "demo-ft-kept.safetensors", demo=True)
    rows = [{"model": m, "role": role, "pixels": px, "truth_pixels": n, "overall_accuracy": oa, "miou": miou}
            for m, role in (("demo-unet-r18", "parent"), ("demo-ft-kept", "fine-tuned"))
            for px, n, oa, miou in (("other pixels", 1000, 0.25 if role == "parent" else 0.5, 0.125),
                                    ("fine-tuning pixels", 40, 0.0 if role == "parent" else 1.0, 0.5))]
    base = {"state": "done", "parent": "demo-unet-r18", "pixels": 40, "right_before": 0, "right_after": 40}
    for job, doc in {"ft-kept": {**base, "model_id": "demo-ft-kept", "evaluation": rows, "time": 2},
                     "ft-gone": {**base, "model_id": "demo-ft-deleted", "evaluation": rows, "time": 3},
                     "ft-running": {"state": "running", "model_id": "demo-ft-kept", "time": 4}}.items():
        (jobs.jobs_dir() / job).mkdir(parents=True)
        (jobs.jobs_dir() / job / "progress.json").write_text(json.dumps(doc))
    assert [d["model_id"] for d in jobs.finished()] == ["demo-ft-kept"]

    at = AppTest.from_file(str(REPO / "pages/2_Metrics.py"), default_timeout=240)
    at.run()
    assert not at.exception, at.exception
    assert any(s.value.startswith("Fine-tuned models") for s in at.subheader)
    shown = next(df.value for df in at.dataframe if {"role", "truth_pixels"} <= set(df.value.columns))
    assert len(shown) == 4 and set(shown["model"]) == {"demo-unet-r18", "demo-ft-kept"}
    train = shown[shown["pixels"] == "fine-tuning pixels"]
    assert dict(zip(train["role"], train["overall_accuracy"])) == {"parent": 0.0, "fine-tuned": 1.0}
    assert any("40 px (100.0 %)" in m.value for m in at.markdown)
