"""``evaluate`` and ``change`` on [[stack]] images: the prediction of a stack (written by ``predict ID``) scored
against the real FLAIR-1 ground truth of the same ground, and the change between the predictions of two stacks
of two vintages; each checked against a plain numpy count of the same rasters.

Vintage 2021 is the ``delivery`` fixture of tests/test_stack.py (real FLAIR-1 pixels cut into lossless JP2 RGB and
IRC dalles and an elevation GeoTIFF). Vintage 2023 is the same ground cut on other dalle grids, with one
300 x 400 px area replaced by another part of the image (rotated), so that its predictions change there.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio

from flair_viz.cli.main import main
from flair_viz.core import classes, raster
from flair_viz.core.errors import AlignmentError
from tests.test_stack import FULL, LOSSLESS_JP2, cut, delivery, write  # noqa: F401  (delivery: the fixture)

REPO = Path(__file__).resolve().parents[1]
MASKS = REPO / "data" / "demo" / "flair1" / "D034_2021" / "Z6_NU" / "msk"
PIXEL_HA = 0.2 * 0.2 / 10_000


def truth_block(transform) -> np.ndarray:
    """The FLAIR-1 masks of the 2 x 2 patches under the delivery, as one 1024 x 1024 array on its grid."""
    out = np.zeros((1024, 1024), np.uint8)
    found = 0
    for p in sorted(MASKS.glob("MSK_*.tif")):
        info = raster.describe(p)
        col, row = ~transform * (info.bounds[0], info.bounds[3])
        col, row = round(col), round(row)
        if 0 <= col < 1024 and 0 <= row < 1024:
            out[row:row + 512, col:col + 512] = raster.read(p, 1)
            found += 1
    assert found == 4
    return out


def numpy_confusion(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """19 x 19 counts, rows truth, of pixels whose both values are FLAIR-1 classes 1..19: the plain definition."""
    ok = (truth >= 1) & (truth <= 19) & (pred >= 1) & (pred <= 19)
    return np.bincount((truth[ok].astype(int) - 1) * 19 + pred[ok] - 1, minlength=361).reshape(19, 19)


@pytest.fixture(scope="module")
def two_vintages(delivery, tmp_path_factory):  # noqa: F811
    """A catalog with the stacks of 2021 and 2023, the tiny model, and both stacks' predictions written by
    ``flair-viz predict ID OUT.tif``; once for the module (its own model, data and cache folders)."""
    with pytest.MonkeyPatch.context() as mp:
        home = tmp_path_factory.mktemp("vintages")
        for name, sub in (("FLAIR_VIZ_MODELS", "models"), ("FLAIR_VIZ_DATA", "data"), ("FLAIR_VIZ_CACHE", "cache")):
            (home / sub).mkdir()
            mp.setenv(name, str(home / sub))
        mp.setenv("FLAIR_VIZ_DEVICE", "cpu")
        yield _two_vintages(delivery, home)


def _two_vintages(delivery, tmp_path: Path):  # noqa: F811
    from tests.model_fixtures import make_model

    root, img, transform = delivery
    later = img.copy()
    later[:, 100:400, 500:900] = np.rot90(img[:, 600:1000, 50:350], axes=(1, 2))
    v2 = root / "v2023"
    if not v2.exists():
        cut(v2 / "rvb", later[[0, 1, 2]], transform, (512, 340), "RVB", **LOSSLESS_JP2)
        cut(v2 / "irc", later[[3, 0, 1]], transform, (1024, 600), "IRC", **LOSSLESS_JP2)
        write(v2 / "ndsm.tif", later[[4]], transform)
    cat = root / "vintages.toml"
    cat.write_text(f'data_root = "."\n\n[[stack]]\n{FULL}\n\n[[stack]]\nid = "HERAULT_2023"\nrgb = "v2023/rvb"\n'
                   'irc = "v2023/irc"\nelevation = "v2023/ndsm.tif"\nvintage = "2023"\n', encoding="utf-8")
    make_model(tmp_path / "models", "tiny", "safetensors")
    preds = {}
    for ds_id in ("HERAULT_2021", "HERAULT_2023"):
        preds[ds_id] = tmp_path / f"PRED_{ds_id}.tif"
        assert main(["predict", "--model", "tiny", "--quiet", "--catalog", str(cat), ds_id, str(preds[ds_id])]) == 0
    return root, cat, transform, preds


def test_evaluate_a_stack_prediction_against_the_truth_of_the_same_ground(two_vintages, tmp_path, capsys):
    root, cat, transform, preds = two_vintages
    truth = truth_block(transform)
    truth_tif = write(tmp_path / "truth.tif", truth[None], transform)
    pred = raster.read(preds["HERAULT_2021"], 1)
    assert main(["evaluate", "--truth", str(truth_tif), "--pred", str(preds["HERAULT_2021"]), "--protocol", "full",
                 "--out", str(tmp_path / "m.parquet"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    want = numpy_confusion(truth, pred)
    assert np.array_equal(np.array(doc["confusion_matrix"]["values"]), want) and want.sum() == 1024 * 1024
    assert doc["overall_accuracy"] == pytest.approx(np.trace(want) / want.sum(), abs=1e-6)


def test_evaluate_one_patch_of_truth_inside_a_stack_prediction(two_vintages, tmp_path):
    """The truth of one FLAIR-1 patch (512 px, LOCAL_CS as FLAIR-1 ships it) against the whole stack's prediction
    (1024 px): counted over the truth's pixels, at its place in the prediction."""
    from flair_viz.metrics.evaluate import evaluate
    from flair_viz.metrics.pairs import resolve_pairs

    _, _, transform, preds = two_vintages
    pred = raster.read(preds["HERAULT_2021"], 1)
    for msk in sorted(MASKS.glob("MSK_*.tif")):
        info = raster.describe(msk)
        col, row = (round(v) for v in ~transform * (info.bounds[0], info.bounds[3]))
        if (col, row) == (512, 0):  # the top-right patch of the block
            break
    else:
        pytest.fail("the block's top-right patch")
    run = evaluate(resolve_pairs(str(msk), str(preds["HERAULT_2021"])))
    want = numpy_confusion(raster.read(msk, 1), pred[:512, 512:])
    assert np.array_equal(run.table.total(), want) and want.sum() == 512 * 512
    assert not np.array_equal(want, numpy_confusion(raster.read(msk, 1), pred[:512, :512]))  # the place matters
    assert run.table.meta["minx"].iloc[0] == pytest.approx(info.bounds[0])


def test_a_truth_reaching_beyond_the_prediction_is_refused(two_vintages, tmp_path):
    from flair_viz.metrics.evaluate import evaluate
    from flair_viz.metrics.pairs import resolve_pairs

    _, _, transform, preds = two_vintages
    beyond = write(tmp_path / "MSK_beyond.tif", np.ones((1, 600, 600), np.uint8),
                   transform * rasterio.Affine.translation(700, 700))
    with pytest.raises(AlignmentError) as exc:
        evaluate(resolve_pairs(str(beyond), str(preds["HERAULT_2021"])))
    assert "reaches beyond the prediction" in exc.value.problem and "crop the ground truth" in exc.value.fix


def test_change_between_the_predictions_of_two_stacks(two_vintages, tmp_path, capsys):
    root, cat, transform, preds = two_vintages
    a, b = raster.read(preds["HERAULT_2021"], 1), raster.read(preds["HERAULT_2023"], 1)
    changed = (a != b) & (a > 0) & (b > 0)
    assert changed[100:400, 500:900].mean() > 0.3 and changed.sum() > 0
    out = tmp_path / "change"
    assert main(["change", str(preds["HERAULT_2021"]), str(preds["HERAULT_2023"]), "--out", str(out)]) == 0
    assert np.array_equal(raster.read(out / "change.tif", 1), np.where(changed, b, 0))
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["changed_area_ha"] == pytest.approx(changed.sum() * PIXEL_HA, rel=1e-9)
    with open(out / "from_to.csv", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    names = [c.name for c in classes.FLAIR1_CLASSES]
    ha = np.array([[float(v) for v in r[1:]] for r in rows[1:]])
    assert rows[0][1:] == names
    want = numpy_confusion(a, b) * PIXEL_HA
    assert np.allclose(ha, want, rtol=1e-9, atol=1e-12)


def test_change_with_a_model_between_two_stacks_by_id(two_vintages, tmp_path):
    """``change --model M STACK_A STACK_B`` predicts both stacks itself (with their bands) and gives the same change
    as the two predictions written by ``predict``."""
    root, cat, transform, preds = two_vintages
    a, b = raster.read(preds["HERAULT_2021"], 1), raster.read(preds["HERAULT_2023"], 1)
    out = tmp_path / "model_change"
    assert main(["change", "--model", "tiny", "HERAULT_2021", "HERAULT_2023", "--catalog", str(cat),
                 "--out", str(out)]) == 0
    got = raster.read(out / "change.tif", 1)
    want = np.where((a != b) & (a > 0) & (b > 0), b, 0)
    assert (got == want).mean() >= 0.999 and (want > 0).sum() > 10_000
