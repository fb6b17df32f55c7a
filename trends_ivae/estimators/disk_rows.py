"""Rows of an on-disk 2-D array (``h5py.Dataset``, ``np.memmap``), standardised on read.

Streamed training and inference read ``X`` block by block instead of loading it.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["DiskRows", "on_disk"]

def on_disk(X: Any) -> bool:
    """True for a 2-D array-like that is not in memory (``h5py.Dataset``, ``np.memmap``)."""
    return (isinstance(X, np.memmap)
            or (not isinstance(X, (np.ndarray, torch.Tensor, list, tuple))
                and hasattr(X, "shape") and hasattr(X, "dtype") and hasattr(X, "__getitem__")))


class DiskRows:
    """Standardised rows of an on-disk 2-D array, read block by block (streamed training).

    ``rows[idx]`` takes increasing row numbers and reads only the blocks of
    ``block`` rows that hold some of them, each as one contiguous slice (much faster
    than an HDF5 point selection); :meth:`blocks` walks the whole array.
    """

    block = 16384

    def __init__(self, data: Any, mean: np.ndarray, scale: np.ndarray) -> None:
        self.data, self.mean, self.scale = data, mean, scale
        self.shape = tuple(int(n) for n in data.shape)

    def _std(self, raw: np.ndarray) -> np.ndarray:
        return ((np.asarray(raw, dtype=np.float32) - self.mean) / self.scale).astype(np.float32, copy=False)

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((rows.size, self.shape[1]), np.float32)
        which = rows // self.block
        cuts = np.flatnonzero(np.diff(which)) + 1
        for part in np.split(np.arange(rows.size), cuts):
            if not part.size:
                continue
            lo = int(which[part[0]]) * self.block
            raw = self.data[lo:min(lo + self.block, self.shape[0])]
            out[part] = self._std(np.asarray(raw)[rows[part] - lo])
        return out

    @staticmethod
    def blocks(data: Any, size: int | None = None):
        """``(start, block)`` over the rows of ``data`` as float64 arrays."""
        size = size or DiskRows.block
        for lo in range(0, int(data.shape[0]), size):
            yield lo, np.asarray(data[lo:lo + size], dtype=np.float64)
