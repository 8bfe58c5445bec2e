"""Training throughput (images/s) of the goldnas_fast trainer vs a plain eager PyTorch loop.

Usage: python bench/bench_train.py [--device cpu|cuda] [--images N] [--batch-size B] [--data PATH] [--quick]
                                   [--json PATH]

Networks: the cheapest and the most expensive NAS-Bench-201 architecture by official FLOPs (ties go to
the lowest index). Both loops train the same network with the nb201 protocol's SGD (Nesterov, wd 5e-4)
and the same augmentation (crop 32/pad 4, flip, normalize):

* ``plain``: ``torch.utils.data.DataLoader`` over a ``TensorDataset`` of uint8 images with a
  per-sample Python transform (pad, random crop, random flip, to float, normalize, as torchvision does
  image by image), batches moved to the device, eager forward/backward/step.
* ``goldnas_fast``: :meth:`goldnas_fast.train.trainer.Trainer.train_epoch` on a
  :class:`goldnas_fast.data.DeviceLoader` (dataset on the device, batched tensor augmentation), in
  fp32 (TF32 off on CUDA), then with ``channels_last`` and with bf16 autocast.

Each configuration runs one untimed warm-up epoch, then ``--epochs`` timed epochs; the table gives
images/s of the timed epochs and the speed-up over ``plain``. All rows run on the same machine in the
same process.

CPU note: on the 2-core KVM guest used for development, memory that glibc returns to the OS (large
tensors are ``mmap``-ed and unmapped on free) was expensive to fault in again, and steps ran up to
15x slower at random. Run with ``MALLOC_MMAP_THRESHOLD_=17179869184 MALLOC_TRIM_THRESHOLD_=17179869184``
(freed memory is kept and reused) for stable numbers; both loops share the setting.
"""
from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, markdown_table, sync, write_json  # noqa: E402

from goldnas_fast.data import DeviceLoader, load_cifar10  # noqa: E402
from goldnas_fast.nb201 import NUM_ARCHS, build_network, cost  # noqa: E402
from goldnas_fast.runs import RunDir  # noqa: E402
from goldnas_fast.train import get_protocol  # noqa: E402
from goldnas_fast.train.trainer import TrainOptions, Trainer, precision  # noqa: E402


class PerSampleTransform(Dataset):
    """``TensorDataset`` + torchvision-style per-image Python transforms (the usual CIFAR pipeline)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean: tuple, std: tuple) -> None:
        self.base = TensorDataset(images, labels)
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img, label = self.base[i]
        padded = F.pad(img, (4, 4, 4, 4))
        oy, ox = random.randint(0, 8), random.randint(0, 8)
        img = padded[:, oy:oy + 32, ox:ox + 32]
        if random.random() < 0.5:
            img = img.flip(2)
        return (img.float() / 255 - self.mean) / self.std, label


def extremes() -> list[tuple[str, int]]:
    flops = [(cost(i).flops_m, i) for i in range(NUM_ARCHS)]
    return [("cheapest", min(flops)[1]), ("most expensive", max(flops)[1])]


def plain_epoch_rate(model: torch.nn.Module, loader: DataLoader, device: torch.device, epochs: int) -> float:
    p = get_protocol("nb201-12")
    opt = p.make_optimizer(model.parameters())
    model.train()

    def one_epoch() -> int:
        n = 0
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            n += y.shape[0]
        return n

    one_epoch()  # warm-up
    sync(str(device))
    t0, n = time.perf_counter(), 0
    for _ in range(epochs):
        n += one_epoch()
    sync(str(device))
    return n / (time.perf_counter() - t0)


def trainer_rate(model: torch.nn.Module, loader: DeviceLoader, device: torch.device, epochs: int, amp: str,
                 channels_last: bool, batch_size: int) -> float:
    p = get_protocol("nb201-12").with_overrides(epochs=epochs + 1, batch_size=batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(model, p, RunDir(Path(tmp) / "r", "train", {}), loader.epoch_batches, loader.num_samples,
                          {}, TrainOptions(seed=0, device=device, channels_last=channels_last, amp=amp,
                                           progress=False))
        with precision(amp, device):
            trainer.train_epoch(0)  # warm-up
            seconds = images = 0.0
            for e in range(1, epochs + 1):
                stats = trainer.train_epoch(e)
                seconds += stats["train_seconds"]
                images += stats["images_per_s"] * stats["train_seconds"]
    return images / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--data", help="CIFAR-10 path (default: the embedded 512-image sample)")
    parser.add_argument("--images", type=int, default=None, help="training images per epoch")
    parser.add_argument("--batch-size", type=int, default=None, help="default 256 (the protocol's), 64 on CPU")
    parser.add_argument("--epochs", type=int, default=1, help="timed epochs per configuration")
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers of the plain loop "
                        "(default 0 on CPU, 4 on CUDA)")
    parser.add_argument("--quick", action="store_true", help="fp32 rows only")
    parser.add_argument("--cpu-bf16", action="store_true", help="also time bf16 autocast on CPU (without native "
                        "bf16 instructions it ran 4-50x slower than fp32 on the development machine)")
    parser.add_argument("--json", type=Path, default=None, help="write the rows and the environment here")
    args = parser.parse_args()
    device = torch.device(args.device)
    cpu = device.type == "cpu"
    n_images = args.images or (256 if cpu else 10000)
    batch = args.batch_size or (64 if cpu else 256)
    workers = args.workers if args.workers is not None else (0 if cpu else 4)
    arrays = load_cifar10(args.data, max_train=n_images)
    n_images = arrays.num_train
    p = get_protocol("nb201-12")
    x_cpu = torch.from_numpy(arrays.train_images).permute(0, 3, 1, 2).contiguous()
    y_cpu = torch.from_numpy(arrays.train_labels)
    plain_loader = DataLoader(PerSampleTransform(x_cpu, y_cpu, p.mean, p.std), batch_size=batch, shuffle=True,
                              num_workers=workers, pin_memory=not cpu, persistent_workers=workers > 0)
    rows, records = [], []
    for label, index in extremes():
        flops = cost(index).flops_m

        def fresh() -> torch.nn.Module:
            torch.manual_seed(0)
            return build_network(index).to(device)

        random.seed(0)
        plain = plain_epoch_rate(fresh(), plain_loader, device, args.epochs)
        configs = [("plain (DataLoader, per-sample transforms)", plain)]
        variants = [("goldnas_fast fp32", "fp32", False)]
        if not args.quick:
            variants.append(("goldnas_fast fp32 channels_last", "fp32", True))
            if not cpu or args.cpu_bf16:
                variants += [("goldnas_fast bf16", "bf16", False), ("goldnas_fast bf16 channels_last", "bf16", True)]
            if not cpu:
                variants.insert(1, ("goldnas_fast tf32", "tf32", False))
        for name, amp, cl in variants:
            loader = DeviceLoader(arrays.train_images, arrays.train_labels, batch, device=device, seed=0,
                                  augment=True, mean=p.mean, std=p.std, channels_last=cl)
            configs.append((name, trainer_rate(fresh(), loader, device, args.epochs, amp, cl, batch)))
        for name, rate in configs:
            rows.append((f"{label} ({index})", f"{flops:.2f}", name, f"{rate:.0f}", f"{rate / plain:.2f}x"))
            records.append({"arch": label, "index": index, "mflops": flops, "loop": name, "images_per_s": rate,
                            "over_plain": rate / plain})
        write_json(args.json, "train", str(device), args, records, images=n_images, batch=batch, workers=workers)
        print(f"done: {label} arch {index}", file=sys.stderr)
    print(f"\n{environment(str(device))}\n")
    print(f"{n_images} training images, batch {batch}, {args.epochs} timed epoch(s) after one warm-up epoch, "
          f"plain loop with {workers} DataLoader worker(s)\n")
    print(markdown_table(["NB201 arch (index)", "MFLOPs", "loop", "images/s", "vs plain"], rows))


if __name__ == "__main__":
    main()
