"""Regenerates ``goldnas_fast/resources/cifar10_sample.npz``, the embedded CIFAR-10 sample.

Provenance: CIFAR-10 (A. Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", tech.
report, Univ. of Toronto, 2009; https://www.cs.toronto.edu/~kriz/cifar.html). The sample holds the
official training images 0..511 (from ``data_batch_1``) and test images 0..255 (from ``test_batch``),
pixel-exact and in official order, taken from the verified copy in ``shared/data/cifar10/``
(``cifar10_train_0.npz`` and ``cifar10_test_1k.npz``; see that folder's README for how it was checked).

Format: an ``.npz`` (zip) with ``train_images`` (512, 32, 32, 3) uint8 NHWC, ``train_labels`` (512,)
uint8, ``test_images`` (256, 32, 32, 3), ``test_labels`` (256,), ``label_names`` (10,) str. Members
are LZMA-compressed (about 1.8 MB instead of 2.2 MB with ``np.savez_compressed``'s zlib); ``np.load``
reads them with Python's standard ``lzma`` module. Fixed zip timestamps make the file byte-reproducible.

Usage: ``python goldnas_fast/data/_make_sample.py [--shared DIR] [--out FILE]``.
"""
from __future__ import annotations

import argparse
import io
import zipfile
from pathlib import Path

import numpy as np

N_TRAIN, N_TEST = 512, 256
REPO = Path(__file__).resolve().parents[2]
DEFAULT_SHARED = REPO.parent / "shared" / "data" / "cifar10"
DEFAULT_OUT = REPO / "goldnas_fast" / "resources" / "cifar10_sample.npz"


def write_npz_lzma(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Writes ``arrays`` as an npz whose members are LZMA-compressed ``.npy`` files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_LZMA
            zf.writestr(info, buf.getvalue())


def make_sample(shared: Path, out: Path) -> None:
    with np.load(shared / "cifar10_train_0.npz", allow_pickle=False) as tr, \
            np.load(shared / "cifar10_test_1k.npz", allow_pickle=False) as te:
        arrays = {"train_images": tr["images"][:N_TRAIN], "train_labels": tr["labels"][:N_TRAIN],
                  "test_images": te["images"][:N_TEST], "test_labels": te["labels"][:N_TEST],
                  "label_names": tr["label_names"]}
    write_npz_lzma(out, arrays)
    print(f"wrote {out} ({out.stat().st_size:,} bytes)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=DEFAULT_SHARED, help="folder with the CIFAR-10 npz shards")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
    make_sample(args.shared, args.out)


if __name__ == "__main__":
    main()
