"""Open handles of a band stack's VRT, kept between tile requests and lent to one request at a time.

Why: rio-tiler's :class:`~rio_tiler.io.Reader` opens its file for each tile and closes it after. For a
stack of JPEG 2000 dalles (:mod:`flair_viz.core.stack`) closing the handle throws away GDAL's cache of the
decoded dalles, so each tile decoded again every dalle it touched (a 700 × 450 px lossless dalle: 63 ms)
and a stack's tiles took about 3× those of a COG of the same pixels. Through a kept handle a tile read
again costs what a COG's does (``benchmarks/stack.py``).

Why lent, not per thread: a rasterio dataset must not be used by two threads at once, and a request runs on
whichever worker thread of the server's pool is free, so per-thread handles were nearly always cold. A
file has ``KEEP`` handles; a request borrows one (waiting if all are lent) and gives it back when its
reader closes. Why keyed by the file's stamp: a stack rebuilt under the same path is opened afresh.
Only stacks: a COG or a zone mosaic of GeoTIFF patches decodes cheaply, and its tiles are read in parallel.
"""

from __future__ import annotations

import os
import queue
import threading

import attr
import rasterio
from rasterio.io import DatasetReader
from rio_tiler.io import Reader

from flair_viz.core import stack
from flair_viz.core.stamps import file_stamp

KEEP = 2  # handles per stack file: reads of one stack in parallel, each handle with its own decoded dalles


class _Handles:
    """The handles of one version of one file: a queue of open datasets (None: not opened yet)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.free: queue.LifoQueue[DatasetReader | None] = queue.LifoQueue()  # the warmest handle first
        for _ in range(KEEP):
            self.free.put(None)

    def borrow(self) -> DatasetReader:
        dataset = self.free.get()
        if dataset is None or dataset.closed:
            try:
                dataset = rasterio.open(self.path)
            except BaseException:
                self.free.put(None)
                raise
        return dataset

    def give_back(self, dataset: DatasetReader, current: bool) -> None:
        if current:
            self.free.put(dataset)
        else:  # the file changed while it was lent: nobody will borrow this version again
            dataset.close()

    def close_idle(self) -> None:
        """Close the handles not lent now (those lent are closed when given back to a superseded version)."""
        while True:
            try:
                dataset = self.free.get_nowait()
            except queue.Empty:
                return
            if dataset is not None:
                dataset.close()


_files: dict[str, tuple[dict, _Handles]] = {}  # path -> (its file_stamp, its handles)
_lock = threading.Lock()


def _handles(path: str) -> _Handles | None:
    try:
        stamp = file_stamp(path)
    except OSError:
        return None  # gone: the reader's own open names the problem
    with _lock:
        held = _files.get(path)
        if held is None or held[0] != stamp:
            if held is not None:  # an older version
                held[1].close_idle()
            held = _files[path] = (stamp, _Handles(path))
        return held[1]


def is_stack(path: str) -> bool:
    """A stack's VRT, as :mod:`flair_viz.core.stack` writes it (``.../stacks/<id>-<hash>/stack.vrt``)."""
    return (os.path.basename(path) == stack.VRT_NAME
            and os.path.basename(os.path.dirname(os.path.dirname(path))) == stack.CACHE_FOLDER)


def close_all() -> None:
    """Close every handle not lent now, and forget them (tests; a server stopping)."""
    with _lock:
        for _, handles in _files.values():
            handles.close_idle()
        _files.clear()


@attr.s
class KeptOpenReader(Reader):
    """rio-tiler's Reader that, for a stack, borrows a kept handle (see the module doc) for the life of
    the reader instead of opening the file; any other file is opened per reader, as rio-tiler does."""

    _lent: tuple[_Handles, DatasetReader] | None = attr.ib(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        if not self.dataset and isinstance(self.input, str) and is_stack(self.input):
            handles = _handles(self.input)
            if handles is not None:
                self.dataset = handles.borrow()
                self._lent = (handles, self.dataset)
        try:
            super().__attrs_post_init__()
        except BaseException:
            self._give_back()
            raise

    def _give_back(self) -> None:
        if self._lent is not None:
            handles, dataset = self._lent
            self._lent = None
            with _lock:
                current = _files.get(handles.path, (None, None))[1] is handles
            handles.give_back(dataset, current)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._give_back()
