"""Tests of goldnas_fast.data: loading formats and errors, the NB201 split, augmentation, DeviceLoader."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from goldnas_fast.data import (CIFAR10_TRAIN_MEAN, DARTS_CIFAR10_MEAN, DARTS_CIFAR10_STD, NB201_CIFAR10_MEAN,
                               NB201_CIFAR10_STD, DeviceLoader, crop_flip, cutout, load_cifar10,
                               nb201_cifar10_split, normalize, random_crop, random_flip, sample_path,
                               seeded_split, train_transform)

SHARED_CIFAR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10"
CUDA = pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"))


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def _labels(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed + 1).integers(0, 10, n).astype(np.uint8)


def _write_batch(path: Path, images: np.ndarray, labels: np.ndarray, protocol: int = 2) -> None:
    rows = images.transpose(0, 3, 1, 2).reshape(len(images), 3072)  # official layout: R, G, B planes
    d = {b"batch_label": b"training batch", b"labels": [int(v) for v in labels], b"data": rows,
         b"filenames": [b"x.png"] * len(images)}
    with open(path, "wb") as f:
        pickle.dump(d, f, protocol=protocol)


def _official_dir(root: Path, n: int = 3, test: bool = True, protocol: int = 2) -> tuple[np.ndarray, ...]:
    root.mkdir(parents=True, exist_ok=True)
    x, y = _images(5 * n), _labels(5 * n)
    for k in range(5):
        _write_batch(root / f"data_batch_{k + 1}", x[k * n:(k + 1) * n], y[k * n:(k + 1) * n], protocol)
    xt, yt = _images(n, 7), _labels(n, 7)
    if test:
        _write_batch(root / "test_batch", xt, yt, protocol)
    return x, y, xt, yt


# ------------------------------------------------------------------------------------------ loading
@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_official_batches(tmp_path: Path, protocol: int) -> None:
    x, y, xt, yt = _official_dir(tmp_path, protocol=protocol)
    d = load_cifar10(tmp_path)
    assert d.train_images.shape == (15, 32, 32, 3) and d.train_images.dtype == np.uint8
    assert d.train_labels.dtype == np.int64
    np.testing.assert_array_equal(d.train_images, x)
    np.testing.assert_array_equal(d.train_labels, y)
    np.testing.assert_array_equal(d.test_images, xt)
    np.testing.assert_array_equal(d.test_labels, yt)
    assert "official" in d.source and str(tmp_path) in d.source


def test_official_batches_subdir_limits_and_no_test(tmp_path: Path) -> None:
    x, y, _, _ = _official_dir(tmp_path / "cifar-10-batches-py", test=False)
    d = load_cifar10(tmp_path, max_train=4)
    np.testing.assert_array_equal(d.train_images, x[:4])
    assert d.num_test == 0 and d.test_images.shape == (0, 32, 32, 3)


def test_official_errors(tmp_path: Path) -> None:
    _official_dir(tmp_path)
    (tmp_path / "data_batch_4").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_4"):
        load_cifar10(tmp_path)
    _official_dir(tmp_path)
    raw = (tmp_path / "data_batch_2").read_bytes()
    (tmp_path / "data_batch_2").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="data_batch_2.*truncated or corrupt"):
        load_cifar10(tmp_path)
    _official_dir(tmp_path)
    with open(tmp_path / "data_batch_3", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 3000), np.uint8), b"labels": [0, 1]}, f)
    with pytest.raises(ValueError, match=r"data_batch_3.*\(N, 3072\)"):
        load_cifar10(tmp_path)
    _official_dir(tmp_path)
    with open(tmp_path / "data_batch_1", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1, 2]}, f)
    with pytest.raises(ValueError, match="lengths differ"):
        load_cifar10(tmp_path)


class _Evil:
    def __reduce__(self):  # a pickle that would call os.getcwd on load
        return (os.getcwd, ())


def test_pickle_with_foreign_global_is_refused(tmp_path: Path) -> None:
    _official_dir(tmp_path)
    with open(tmp_path / "data_batch_5", "wb") as f:
        pickle.dump({b"data": _Evil(), b"labels": []}, f)
    with pytest.raises(ValueError, match="not allowed"):
        load_cifar10(tmp_path)


def test_npz_shards(tmp_path: Path) -> None:
    parts = [(_images(4, k), _labels(4, k)) for k in range(3)]
    for k in (2, 0, 1):  # written out of order; loaded in numeric order
        np.savez(tmp_path / f"cifar10_train_{k}.npz", images=parts[k][0], labels=parts[k][1])
    np.savez(tmp_path / "cifar10_test_1k.npz", images=_images(2, 9), labels=_labels(2, 9))
    d = load_cifar10(tmp_path)
    np.testing.assert_array_equal(d.train_images, np.concatenate([p[0] for p in parts]))
    np.testing.assert_array_equal(d.train_labels, np.concatenate([p[1] for p in parts]))
    np.testing.assert_array_equal(d.test_images, _images(2, 9))
    d = load_cifar10(tmp_path, max_train=6, max_test=0)
    assert d.num_train == 6 and d.num_test == 0
    assert "cifar10_train_2" not in d.source  # the third shard was not needed


def test_npz_single_files(tmp_path: Path) -> None:
    x, y = _images(6), _labels(6)
    np.savez_compressed(tmp_path / "both.npz", train_images=x, train_labels=y, test_images=x[:2], test_labels=y[:2])
    d = load_cifar10(tmp_path / "both.npz")
    np.testing.assert_array_equal(d.train_images, x)
    np.testing.assert_array_equal(d.test_labels, y[:2])
    np.savez(tmp_path / "some.npz", images=x, labels=y)
    d = load_cifar10(str(tmp_path / "some.npz"))
    assert d.num_train == 6 and d.num_test == 0
    np.savez(tmp_path / "my_test.npz", images=x, labels=y)
    d = load_cifar10(tmp_path / "my_test.npz")
    assert d.num_train == 0 and d.num_test == 6


@pytest.mark.parametrize("images, labels, match", [
    (np.zeros((2, 32, 32, 3), np.float32), np.zeros(2, np.int64), "uint8"),
    (np.zeros((2, 3, 32, 32), np.uint8), np.zeros(2, np.int64), r"\(N, 32, 32, 3\)"),
    (np.zeros((2, 32, 32, 3), np.uint8), np.array([0, 10]), r"0\.\.9"),
    (np.zeros((2, 32, 32, 3), np.uint8), np.array([-1, 0]), r"0\.\.9"),
    (np.zeros((2, 32, 32, 3), np.uint8), np.zeros(3, np.int64), "lengths differ"),
    (np.zeros((2, 32, 32, 3), np.uint8), np.zeros(2, np.float32), "integers"),
    (np.zeros((2, 32, 32, 3), np.uint8), np.zeros((2, 1), np.int64), "1-D"),
])
def test_npz_content_errors(tmp_path: Path, images: np.ndarray, labels: np.ndarray, match: str) -> None:
    np.savez(tmp_path / "bad.npz", images=images, labels=labels)
    with pytest.raises(ValueError, match=match) as info:
        load_cifar10(tmp_path / "bad.npz")
    assert "bad.npz" in str(info.value)


def test_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_cifar10(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="no CIFAR-10 data found"):
        load_cifar10(tmp_path)
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all")
    with pytest.raises(ValueError, match="junk.npz.*not a readable"):
        load_cifar10(tmp_path / "junk.npz")
    np.savez(tmp_path / "keys.npz", pictures=_images(1))
    with pytest.raises(ValueError, match="expected arrays 'images' and 'labels'"):
        load_cifar10(tmp_path / "keys.npz")
    np.savez(tmp_path / "half.npz", train_images=_images(1))
    with pytest.raises(ValueError, match="train_labels"):
        load_cifar10(tmp_path / "half.npz")
    np.savez(tmp_path / "cifar10_train_0.npz", images=_images(1))
    with pytest.raises(ValueError, match="cifar10_train_0.npz"):
        load_cifar10(tmp_path)
    with pytest.raises(ValueError, match="max_train"):
        load_cifar10(None, max_train=-1)


def test_embedded_sample() -> None:
    d = load_cifar10(None)
    assert d.train_images.shape == (512, 32, 32, 3) and d.test_images.shape == (256, 32, 32, 3)
    assert d.train_labels.dtype == np.int64 and set(np.unique(d.train_labels)) == set(range(10))
    assert d.label_names[0] == "airplane" and d.label_names[9] == "truck"
    assert sample_path().stat().st_size < 2_100_000
    if (SHARED_CIFAR / "cifar10_tiny.npz").is_file():
        with np.load(SHARED_CIFAR / "cifar10_tiny.npz") as t:
            np.testing.assert_array_equal(d.train_images, t["train_images"])
            np.testing.assert_array_equal(d.test_labels, t["test_labels"])


def test_real_test_1k() -> None:
    path = SHARED_CIFAR / "cifar10_test_1k.npz"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    d = load_cifar10(path)
    assert d.num_train == 0 and d.test_images.shape == (1000, 32, 32, 3)
    # class counts documented in shared/data/cifar10/README.md
    np.testing.assert_array_equal(np.bincount(d.test_labels, minlength=10),
                                  [103, 89, 100, 103, 90, 86, 112, 102, 106, 109])
    np.testing.assert_array_equal(d.test_images[:256], load_cifar10(None).test_images)


# ------------------------------------------------------------------------------------------ split
def test_nb201_split() -> None:
    train, valid = nb201_cifar10_split()
    assert len(train) == len(valid) == 25000 and train.dtype == np.int64
    np.testing.assert_array_equal(train[:5], [0, 5, 7, 11, 13])  # docs/method/nasbench201.md §1.7
    np.testing.assert_array_equal(valid[:5], [1, 2, 3, 4, 6])
    assert np.all(np.diff(train) > 0) and np.all(np.diff(valid) > 0)
    np.testing.assert_array_equal(np.sort(np.concatenate([train, valid])), np.arange(50000))
    t2, v2 = nb201_cifar10_split(20000)
    np.testing.assert_array_equal(t2, train[train < 20000])
    np.testing.assert_array_equal(v2, valid[valid < 20000])
    with pytest.raises(ValueError, match="n_available"):
        nb201_cifar10_split(50001)


def test_seeded_split() -> None:
    a, b = seeded_split(512)
    assert len(a) == len(b) == 256 and not set(a) & set(b)
    a2, _ = seeded_split(512)
    np.testing.assert_array_equal(a, a2)
    assert not np.array_equal(a, seeded_split(512, seed=1)[0])
    a, b = seeded_split(10, 3, seed=5)
    assert len(a) == 3 and len(b) == 7
    with pytest.raises(ValueError, match="first"):
        seeded_split(10, 11)


# ------------------------------------------------------------------------------------------ augmentation
def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _batch(n: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(_images(n, seed)).permute(0, 3, 1, 2).contiguous()


def test_random_crop_is_a_window_of_the_padded_input() -> None:
    x = _batch()
    out = random_crop(x, _gen(0), padding=4)
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    offsets = set()
    for n in range(x.shape[0]):
        hits = [(oy, ox) for oy in range(9) for ox in range(9)
                if torch.equal(out[n], padded[n, :, oy:oy + 32, ox:ox + 32])]
        assert len(hits) == 1, f"image {n}: crop is not a unique window of the padded input"
        offsets.add(hits[0])
    assert len(offsets) > 10  # per-image offsets, not one for the batch


def test_random_flip() -> None:
    x = _batch()
    out = random_flip(x, _gen(1))
    flipped = [torch.equal(out[n], x[n].flip(2)) for n in range(64)]
    kept = [torch.equal(out[n], x[n]) for n in range(64)]
    assert all(f != k for f, k in zip(flipped, kept))
    assert 10 < sum(flipped) < 54


def test_crop_flip_fused_equals_sequential() -> None:
    x = _batch()
    g = _gen(3)
    sequential = random_flip(random_crop(x, g), g)  # one generator: crop draws, then flip draws
    assert torch.equal(crop_flip(x, _gen(3)), sequential)
    assert not torch.equal(crop_flip(x, _gen(4)), sequential)
    assert torch.equal(crop_flip(x, _gen(3), padding=0, flip=False), x)


def _box_sizes(zero: torch.Tensor) -> list[tuple[int, int]]:
    """(rows, cols) of the zero box per image; asserts the zero set is an axis-aligned rectangle."""
    sizes = []
    for m in zero:
        rows, cols = m.any(1), m.any(0)
        assert torch.equal(m, rows[:, None] & cols[None, :])
        r, c = int(rows.sum()), int(cols.sum())
        if r:
            idx = rows.nonzero().flatten()
            assert int(idx[-1] - idx[0]) + 1 == r  # contiguous
        sizes.append((r, c))
    return sizes


def test_cutout_zeroes_a_clipped_square() -> None:
    x = torch.rand(256, 3, 32, 32) + 0.5  # no zeros before Cutout
    out = cutout(x, 16, _gen(4))
    zero = out == 0
    assert torch.equal(zero[:, 0], zero[:, 1]) and torch.equal(zero[:, 0], zero[:, 2])  # all channels
    assert torch.equal(out[~zero], x[~zero])
    sizes = _box_sizes(zero[:, 0])
    assert all(1 <= r <= 16 and 1 <= c <= 16 for r, c in sizes)
    assert (16, 16) in sizes and any(r < 16 or c < 16 for r, c in sizes)  # inside and clipped cases


def test_train_transform_cutout_after_normalization() -> None:
    x = _batch(32)
    plain = train_transform(x, _gen(5))
    cut = train_transform(x, _gen(5), cutout_length=16)
    assert plain.dtype == torch.float32
    diff = plain != cut
    assert torch.equal(cut[diff], torch.zeros_like(cut[diff]))  # patch = 0 in normalised space (the mean)
    sizes = _box_sizes((cut == 0).all(1))
    assert all(r <= 16 and c <= 16 for r, c in sizes) and max(sizes) == (16, 16)


def test_normalize_and_constants() -> None:
    x = _batch(4)
    y = normalize(x, NB201_CIFAR10_MEAN, NB201_CIFAR10_STD)
    ref = (x.double() / 255 - torch.tensor([125.3, 123.0, 113.9]).double().view(1, 3, 1, 1) / 255) \
        / (torch.tensor([63.0, 62.1, 66.7]).double().view(1, 3, 1, 1) / 255)
    torch.testing.assert_close(y.double(), ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(normalize(x.float() / 255), y)
    assert DARTS_CIFAR10_MEAN[0] == CIFAR10_TRAIN_MEAN[0] == 0.49139968 and DARTS_CIFAR10_STD[0] == 0.24703233
    with pytest.raises(ValueError, match="mean"):
        normalize(x, (0.5, 0.5), (0.2, 0.2, 0.2))


def test_augmentation_determinism() -> None:
    x = _batch(32)
    a = train_transform(x, _gen(11), cutout_length=16)
    assert torch.equal(a, train_transform(x, _gen(11), cutout_length=16))
    assert not torch.equal(a, train_transform(x, _gen(12), cutout_length=16))


# ------------------------------------------------------------------------------------------ loader
def _loader(n: int = 100, **kw) -> DeviceLoader:
    return DeviceLoader(_images(n), np.arange(n), kw.pop("batch_size", 16), **kw)


def _order(loader: DeviceLoader) -> list[int]:
    return [int(v) for _, y in loader for v in y]


def test_loader_batches_cover_epoch() -> None:
    ld = _loader(100, seed=3)
    assert len(ld) == 7 and len(_loader(100, drop_last=True)) == 6
    batches = list(ld)
    assert [x.shape[0] for x, _ in batches] == [16] * 6 + [4]
    x, y = batches[0]
    assert x.dtype == torch.float32 and x.shape[1:] == (3, 32, 32) and y.dtype == torch.int64
    order = _order(ld)
    assert sorted(order) == list(range(100)) and order != list(range(100))
    torch.testing.assert_close(x, normalize(torch.from_numpy(_images(100)[y.numpy()]).permute(0, 3, 1, 2)))
    assert _order(_loader(100, shuffle=False)) == list(range(100))
    assert sum(1 for _ in _loader(100, drop_last=True)) == 6


def test_loader_epochs_and_resume() -> None:
    run = _loader(64, seed=7, augment=True, cutout=16)
    epochs = []
    for e in range(3):
        run.set_epoch(e)
        epochs.append(list(run))
    assert _order_of(epochs[0]) != _order_of(epochs[1])
    resumed = _loader(64, seed=7, augment=True, cutout=16)  # a fresh process resuming at epoch 2
    resumed.set_epoch(2)
    for (xa, ya), (xb, yb) in zip(epochs[2], resumed, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    other = _loader(64, seed=8, augment=True, cutout=16)
    other.set_epoch(2)
    assert not torch.equal(next(iter(other))[0], epochs[2][0][0])
    # a caller's generator (the trainer's per-epoch one) drives the same draws
    a = list(run.epoch_batches(_gen(99)))
    b = list(resumed.epoch_batches(_gen(99)))
    assert all(torch.equal(p[0], q[0]) for p, q in zip(a, b))


def _order_of(batches: list) -> list[int]:
    return [int(v) for _, y in batches for v in y]


def test_loader_augment_differs_from_plain_but_same_order() -> None:
    plain, aug = _loader(32, seed=1), _loader(32, seed=1, augment=True)
    assert _order(plain) == _order(aug)
    assert not torch.equal(next(iter(plain))[0], next(iter(aug))[0])


@pytest.mark.parametrize("n, world", [(100, 3), (64, 4), (5, 2)])
def test_loader_distributed_shards(n: int, world: int) -> None:
    parts = []
    for rank in range(world):
        ld = _loader(n, seed=2, rank=rank, world_size=world, batch_size=8)
        ld.set_epoch(1)
        parts.append(_order(ld))
        assert ld.num_samples == n // world and len(ld) == -(-(n // world) // 8)
    assert all(len(p) == n // world for p in parts)
    union = [i for p in parts for i in p]
    assert len(set(union)) == len(union) == world * (n // world)  # disjoint, equal, covering
    full = _loader(n, seed=2)
    full.set_epoch(1)
    assert set(union) == set(_order(full)[: world * (n // world)])


def test_loader_options_and_errors() -> None:
    ld = _loader(20, channels_last=True, indices=[3, 5, 7], batch_size=2, shuffle=False)
    x, y = next(iter(ld))
    assert x.is_contiguous(memory_format=torch.channels_last) and y.tolist() == [3, 5]
    assert ld.num_images == 3 and len(ld) == 2
    torch_nchw = torch.from_numpy(_images(4)).permute(0, 3, 1, 2)
    assert torch.equal(next(iter(DeviceLoader(torch_nchw, np.arange(4), 4, shuffle=False)))[0],
                       next(iter(DeviceLoader(_images(4), np.arange(4), 4, shuffle=False)))[0])
    with pytest.raises(ValueError, match="batch_size"):
        _loader(batch_size=0)
    with pytest.raises(ValueError, match="rank"):
        _loader(rank=2, world_size=2)
    with pytest.raises(ValueError, match="labels"):
        DeviceLoader(_images(4), np.arange(3), 2)
    with pytest.raises(ValueError, match="indices"):
        _loader(10, indices=[10])
    with pytest.raises(ValueError, match="mean"):
        _loader(10, mean=(0.5,))
    with pytest.raises(ValueError, match="epoch"):
        _loader(10).set_epoch(-1)


@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_loader_on_sample(device: str) -> None:
    d = load_cifar10(None)
    train, valid = seeded_split(d.num_train)
    ld = DeviceLoader(d.train_images, d.train_labels, 64, device=device, indices=train, augment=True, cutout=16,
                      mean=DARTS_CIFAR10_MEAN, std=DARTS_CIFAR10_STD, seed=1)
    ld.set_epoch(4)
    first = [x.clone() for x, _ in ld]
    again = DeviceLoader(d.train_images, d.train_labels, 64, device=device, indices=train, augment=True,
                         cutout=16, mean=DARTS_CIFAR10_MEAN, std=DARTS_CIFAR10_STD, seed=1)
    again.set_epoch(4)
    assert all(torch.equal(a, b) for a, (b, _) in zip(first, again, strict=True))
    assert first[0].device.type == device and len(first) == 4
    mean = torch.cat(first).mean((0, 2, 3))
    assert mean.abs().max() < 0.5  # roughly centred by the normalisation
