"""Encoding of the embedded table ``resources/nb201_table.npz`` (shared by the writer and the reader).

Each numeric CSV column (6 decimals) is stored exactly as ``round(value * 1e6)``: ``narrow`` (int32,
one row per column) and ``wide`` (int64, columns whose magnitude exceeds int32 after scaling), with
``MISSING`` for an empty cell. ``sha256`` covers the column names and both arrays.
"""
from __future__ import annotations

import hashlib

import numpy as np

__all__ = ["FORMAT_VERSION", "MISSING", "payload_sha256", "decode"]

FORMAT_VERSION = 1
MISSING = np.iinfo(np.int64).min


def payload_sha256(columns: np.ndarray, narrow: np.ndarray, wide: np.ndarray) -> str:
    """sha256 over the column names and both little-endian integer arrays."""
    h = hashlib.sha256()
    h.update("\n".join(columns.tolist()).encode())
    h.update(np.ascontiguousarray(narrow, dtype="<i4").tobytes())
    h.update(np.ascontiguousarray(wide, dtype="<i8").tobytes())
    return h.hexdigest()


def decode(ints: np.ndarray) -> np.ndarray:
    """Integer micro-units to float64 (``MISSING`` -> NaN). ``k / 1e6`` is correctly rounded, so it
    equals ``float()`` of the CSV's 6-decimal text."""
    ints = np.asarray(ints, dtype=np.int64)
    out = ints.astype(np.float64) / 1e6
    out[ints == MISSING] = np.nan
    return out
