"""Background fine-tunes through the child-process runner: a job that fails says why, as the library would."""

from __future__ import annotations

import time

import pytest

from flair_viz.core.catalog import Catalog
from flair_viz.core.errors import FlairVizError
from flair_viz.correct import jobs, training
from tests.helpers import DEMO_CATALOG


def test_a_failed_background_job_reports_the_librarys_problem_and_fix(tmp_path):
    missing = tmp_path / "no corrections.gpkg"
    with pytest.raises(FlairVizError) as ref:  # the same call in this process
        training.finetune("demo-unet-r18", missing, "never-made", Catalog.load(DEMO_CATALOG), training.Settings())
    job = jobs.start("demo-unet-r18", missing, "never-made", catalog=DEMO_CATALOG, evaluate="none")
    for _ in range(1200):
        doc = jobs.status(job)
        if doc["state"] in jobs.TERMINAL:
            break
        time.sleep(0.1)
    assert doc["state"] == "failed", doc
    assert (doc["problem"], doc["fix"]) == (ref.value.problem, ref.value.fix)
    assert doc["model_id"] == "never-made"  # the starting document's fields stay
    assert jobs.finished() == []
