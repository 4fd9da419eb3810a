"""The one evaluate engine: any runner gets the same reuse, merge and failure handling; nodata is ignored."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pytest

from flair_viz import metrics
from flair_viz.core.errors import FlairVizError
from flair_viz.core.jobs import TaskOutcome
from flair_viz.metrics.evaluate import run_evaluation
from tests.helpers import write_tif
from tests.test_metrics import np_confusion


def make_pairs(tmp_path, n: int = 3, seed: int = 0) -> tuple[list[metrics.Pair], dict[str, tuple]]:
    rng = np.random.default_rng(seed)
    arrays = {}
    for i in range(n):
        pid = f"{i:06d}"
        t = rng.integers(0, 21, (40, 50), dtype=np.uint8)
        p = rng.integers(0, 21, (40, 50), dtype=np.uint8)
        write_tif(tmp_path / "truth" / f"MSK_{pid}.tif", t)
        write_tif(tmp_path / "pred" / f"PRED_{pid}.tif", p)
        arrays[pid] = (t, p)
    return metrics.folder_pairs(tmp_path / "truth", tmp_path / "pred", model="m"), arrays


def failing_runner(bad_patch: str):
    """A runner that computes in process but reports one patch as failed, as a Dask worker would."""
    def run(todo: Sequence[metrics.Pair]) -> Iterator[tuple[int, TaskOutcome]]:
        for j, pair in enumerate(todo):
            if pair.patch == bad_patch:
                yield j, TaskOutcome(pair.patch, False, problem="worker said no", fix="retry")
            else:
                yield j, TaskOutcome(pair.patch, True, metrics.compute_pair(pair))

    return run


def test_failed_pairs_are_reported_after_the_others_are_saved_and_reused(tmp_path):
    pairs, arrays = make_pairs(tmp_path)
    store = tmp_path / "m.parquet"
    with pytest.raises(FlairVizError, match="1 of 3 pair.*000001: worker said no"):
        run_evaluation(pairs, store, failing_runner("000001"))
    saved = metrics.MetricsTable.read(store)
    assert sorted(saved.meta["patch"]) == ["000000", "000002"]
    for pid, cm in zip(saved.meta["patch"], saved.matrices):
        assert np.array_equal(cm, np_confusion(*arrays[pid])[0])
    # the serial runner then only counts the missing pair, and keeps pair order
    run = metrics.evaluate(pairs, store=store)
    assert (run.computed, run.reused) == (1, 2)
    assert list(run.table.meta["patch"]) == ["000000", "000001", "000002"]
    assert np.array_equal(run.table.matrices[1], np_confusion(*arrays["000001"])[0])


def test_flush_writes_the_store_while_the_runner_still_works(tmp_path):
    pairs, _ = make_pairs(tmp_path)
    store = tmp_path / "m.parquet"
    seen_during_run = []

    def run(todo: Sequence[metrics.Pair]) -> Iterator[tuple[int, TaskOutcome]]:
        for j, pair in enumerate(todo):
            seen_during_run.append(len(metrics.MetricsTable.read(store)))
            yield j, TaskOutcome(pair.patch, True, metrics.compute_pair(pair))

    run_evaluation(pairs, store, run, flush_every_s=0.0)
    assert seen_during_run == [0, 1, 2]  # each pair was flushed before the next one started
    assert len(metrics.MetricsTable.read(store)) == 3


def test_declared_nodata_of_a_raster_is_ignored_not_counted(tmp_path):
    t = np.full((30, 30), 5, np.uint8)
    t[:, :10] = 2
    p = np.full((30, 30), 5, np.uint8)
    write_tif(tmp_path / "MSK_1.tif", t, nodata=5)
    write_tif(tmp_path / "PRED_1.tif", p)
    pair = metrics.resolve_pairs(str(tmp_path / "MSK_1.tif"), str(tmp_path / "PRED_1.tif"))[0]
    meta, cm = metrics.compute_pair(pair)
    expected = np_confusion(np.where(t == 5, 0, t), p)[0]
    assert np.array_equal(cm, expected)
    assert cm.sum() == 300 and meta["ignored"] == 600  # the 600 truth-nodata pixels are not "class 5"
