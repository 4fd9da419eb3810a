"""A stack's kept handles (flair_viz.core.handles): tiles equal rio-tiler's own on a fresh handle, from any
thread; handles are lent one request at a time, reused, at most KEEP per file, and a rebuilt stack (a new
file version) is opened afresh."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import morecantile
import numpy as np
import pytest
from rasterio.warp import transform_bounds
from rio_tiler.io import Reader

from flair_viz.core import handles
from flair_viz.core.catalog import Catalog
from tests.test_stack import FULL, catalog_with, delivery  # noqa: F401  (delivery: the fixture)

TMS = morecantile.tms.get("WebMercatorQuad")


@pytest.fixture()
def stack_path(delivery):  # noqa: F811
    root, _, _ = delivery
    path = str(Catalog.load(catalog_with(root, FULL)).get("HERAULT_2021").path)
    handles.close_all()
    yield path
    handles.close_all()


def tiles_over(path: str, z: int) -> list[morecantile.Tile]:
    with Reader(path) as r:
        w, s, e, n = transform_bounds(r.crs, "EPSG:4326", *r.bounds)
    return list(TMS.tiles(w, s, e, n, [z]))


def test_a_stack_path_is_recognised_and_a_plain_file_is_not(stack_path, delivery):  # noqa: F811
    assert handles.is_stack(stack_path)
    assert not handles.is_stack(str(delivery[0] / "ndsm.tif"))
    with handles.KeptOpenReader(str(delivery[0] / "ndsm.tif")) as r:  # opened per reader, as rio-tiler does
        assert r._lent is None
    assert r.dataset.closed


def test_tiles_through_kept_handles_equal_fresh_reads_from_any_thread(stack_path):
    tiles = tiles_over(stack_path, 19)
    assert len(tiles) > 4

    def fresh(t):
        with Reader(stack_path) as r:
            return r.tile(t.x, t.y, t.z)

    def kept(t):
        with handles.KeptOpenReader(stack_path) as r:
            return r.tile(t.x, t.y, t.z), threading.get_ident()

    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(kept, tiles * 2))  # every tile twice: the second read comes from a kept handle
    assert len({ident for _, ident in got}) > 1  # several threads took part
    for t, (img, _) in zip(tiles * 2, got):
        want = fresh(t)
        assert np.array_equal(img.data, want.data) and np.array_equal(img.mask, want.mask)


def test_handles_are_lent_one_at_a_time_and_reused(stack_path):
    seen = []
    for _ in range(5):
        with handles.KeptOpenReader(stack_path) as r:
            seen.append(r.dataset)
    assert len({id(d) for d in seen}) == 1 and not seen[0].closed  # one handle, kept open between readers

    readers = [handles.KeptOpenReader(stack_path) for _ in range(handles.KEEP)]
    assert len({id(r.dataset) for r in readers}) == handles.KEEP  # never one handle lent twice at once
    borrowed = threading.Event()

    def another():
        with handles.KeptOpenReader(stack_path):
            borrowed.set()

    waiting = threading.Thread(target=another)
    waiting.start()
    assert not borrowed.wait(0.5)  # all KEEP handles are lent: the next reader waits for one
    readers[0].close()
    assert borrowed.wait(30)
    waiting.join()
    for r in readers[1:]:
        r.close()


def test_a_new_file_version_is_opened_afresh(stack_path):
    with handles.KeptOpenReader(stack_path) as r:
        first = r.dataset
    st = os.stat(stack_path)
    os.utime(stack_path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    with handles.KeptOpenReader(stack_path) as r:
        assert r.dataset is not first
    assert first.closed  # the old version's idle handle was closed
