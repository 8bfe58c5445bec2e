"""A short ``goldnas-fast search`` run timed from outside: wall time, seconds per epoch, images/s.

Usage: python bench/bench_search.py [--device cpu|cuda] [--data PATH] [--epochs 2] [--algo goldnas|darts]
                                    [--batch-size B] [--max-train N] [--timeout S] [--json PATH]

The search runs as its own process, exactly as a user starts it (``python -m goldnas_fast.cli search``),
with its run directory in a temporary folder. Its ``log.jsonl`` gives the search seconds after each
epoch; images per epoch are the training images the loop sees (GOLD-NAS: all, whole batches only;
DARTS: the training half of the split), so images/s counts training images only. The projection to the
issue's protocol (50 epochs over 25,000 images) is ``wall - search seconds`` (start-up, data loading,
table look-ups) plus 50 x 25,000 images at the measured rate of the last epoch.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, run_capped, write_json  # noqa: E402

PROTOCOL_EPOCHS, PROTOCOL_IMAGES = 50, 25000


def images_per_epoch(data: str | None, max_train: int | None, algo: str, batch: int) -> int:
    """Training images one epoch of the search loop consumes (whole batches, as its loaders drop the rest)."""
    from goldnas_fast.data import load_cifar10
    from goldnas_fast.data.split import seeded_split

    n = load_cifar10(data, max_train=max_train).num_train
    if algo == "darts":
        n = len(seeded_split(n)[0])
    return n // batch * batch


def summarize(run_dir: Path, wall: float, per_epoch: int) -> dict:
    """Per-epoch seconds and images/s from the run's log, the result's architecture, and the projection."""
    log = run_dir / "log.jsonl"
    epochs = [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.exists() else []
    out: dict = {"epochs_done": len(epochs), "wall_s": wall, "images_per_epoch": per_epoch}
    if not epochs:
        return out
    cumulative = [e["seconds"] for e in epochs]
    seconds = [b - a for a, b in zip([0.0] + cumulative[:-1], cumulative)]
    out.update(epoch_s=seconds, search_s=cumulative[-1], images_per_s=per_epoch / seconds[-1],
               surviving=[e.get("surviving") for e in epochs], final_arch=epochs[-1].get("arch"))
    overhead = max(0.0, wall - cumulative[-1])
    out["projected_protocol_s"] = overhead + PROTOCOL_EPOCHS * PROTOCOL_IMAGES / out["images_per_s"]
    result = run_dir / "result.json"
    if result.exists():
        final = json.loads(result.read_text()).get("final", {})
        out["final_cifar10_test_acc_200"] = final.get("cifar10_test_acc_200")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--data", default=None, help="CIFAR-10 path (default: the embedded 512-image sample)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--algo", default="goldnas", choices=["goldnas", "darts"])
    parser.add_argument("--batch-size", type=int, default=64, help="the search's batch size (nb201 default 64)")
    parser.add_argument("--max-train", type=int, default=None, help="use only the first N training images")
    parser.add_argument("--timeout", type=float, default=None,
                        help="stop the search this many seconds after this script started (its row is still written)")
    parser.add_argument("--json", type=Path, default=None, help="write the row and the environment here")
    args = parser.parse_args()
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    if args.epochs < 1 or args.batch_size < 1:
        parser.error("--epochs and --batch-size must be >= 1")
    per_epoch = images_per_epoch(args.data, args.max_train, args.algo, args.batch_size)
    with tempfile.TemporaryDirectory(prefix="bench_search_") as tmp:
        run_dir = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "goldnas_fast.cli", "search", "--device", args.device, "--algo", args.algo,
               "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--out", str(run_dir)]
        cmd += ["--data", args.data] if args.data else []
        cmd += ["--max-train", str(args.max_train)] if args.max_train else []
        print("running: " + " ".join(cmd), flush=True)
        rc, out, err, wall = run_capped(cmd, None if deadline is None else max(1.0, deadline - time.monotonic()))
        # the search's own lines, without its progress bars (tqdm redraws them with carriage returns)
        lines = [ln for ln in (out + "\n" + err).replace("\r", "\n").splitlines() if ln.strip() and "%|" not in ln]
        tail = "\n".join(lines)[-2000:]
        row = {"algo": args.algo, "data": args.data or "embedded sample", "epochs": args.epochs,
               "batch": args.batch_size, "exit": rc, **summarize(run_dir, wall, per_epoch)}
    if rc != 0:
        row["error"] = (f"stopped after the {args.timeout:g} s timeout" if rc is None else f"exit {rc}") + \
            f"; output tail: {tail[-600:]}"
    write_json(args.json, "search", args.device, args, [row])
    print(tail[-1500:])
    cells = [row["algo"], row["data"], row["epochs_done"], row["wall_s"], row.get("search_s", "-"),
             row["images_per_epoch"], row.get("images_per_s", "-"), row.get("projected_protocol_s", "-")]
    print(markdown_table(["algo", "data", "epochs", "wall s", "search s", "images/epoch", "images/s (last epoch)",
                          f"projected s ({PROTOCOL_EPOCHS} ep x {PROTOCOL_IMAGES})"], [cells]))
    sys.exit(0 if rc == 0 else 1)


if __name__ == "__main__":
    main()
