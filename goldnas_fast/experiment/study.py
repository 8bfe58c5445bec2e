"""What the NAS-Bench-201 study runs: methods, seeds, budgets and scale, as ``goldnas-fast search`` arguments.

Scales:

- ``full``: the study of ``RESULTS.md`` (CIFAR-10, the NB201 25k/25k split of the 50k training set). GOLD-NAS
  is one-level and trains on the 25k training half only; DARTS-V1 trains weights on that half and
  architecture parameters on the other (the search's own split of the 50k images is the NB201 split).
  Supernet settings are the search command's documented defaults.
- ``demo``: the same methods on the embedded 512-image sample with the search command's sample defaults
  (minutes on a CPU). Not the study: the supernet is smaller and the data 100x fewer images.
- ``tiny``: a smoke run of the whole pipeline (seconds per search, tests).

Random search and regularized evolution query the table (signal ``c10_valid_acc_12``) and are the same at
every scale except ``tiny``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from goldnas_fast.errors import UserError

__all__ = ["METHODS", "SCALES", "EVALUATIONS", "Method", "SearchSpec", "nb201_study", "parse_seeds",
           "parse_methods"]

SCALES = ("full", "demo", "tiny")
EVALUATIONS = 100
"""Table queries per random-search / evolution run (why 100: ``RESULTS.md``, "Evaluation budget")."""
TINY_EVALUATIONS = 20
TRAIN_HALF_FILE = "cifar10_nb201_train25k.npz"


@dataclass(frozen=True)
class Method:
    """One row of the study's table."""

    key: str       # run-directory prefix and --methods name
    label: str     # table label
    algo: str      # goldnas-fast search --algo
    supernet: bool  # trains a supernet (needs the device); False: table queries only


METHODS: dict[str, Method] = {m.key: m for m in (
    Method("goldnas", "GOLD-NAS (Algorithm 1)", "goldnas", True),
    Method("darts", "DARTS-V1 (same supernet)", "darts", True),
    Method("random", "random search", "random", False),
    Method("evolution", "regularized evolution", "evolution", False),
)}

_TINY_NET = ("--C", "4", "--N", "1", "--batch-size", "16")
_SCALE_ARGS: dict[str, dict[str, tuple[str, ...]]] = {
    "full": {"goldnas": (), "darts": (), "random": ("--evaluations", str(EVALUATIONS)),
             "evolution": ("--evaluations", str(EVALUATIONS))},
    "demo": {"goldnas": (), "darts": (), "random": ("--evaluations", str(EVALUATIONS)),
             "evolution": ("--evaluations", str(EVALUATIONS))},
    "tiny": {"goldnas": (*_TINY_NET, "--max-train", "32", "--epochs", "2", "--lambda0", "1.0"),
             "darts": (*_TINY_NET, "--max-train", "64", "--epochs", "1"),
             "random": ("--evaluations", str(TINY_EVALUATIONS)),
             "evolution": ("--evaluations", str(TINY_EVALUATIONS))},
}


@dataclass(frozen=True)
class SearchSpec:
    """One run of a study: its run-directory name and its ``goldnas-fast COMMAND`` arguments.

    ``args`` holds everything but ``--out``, ``--device`` and ``--resume``, which the runner adds.
    """

    name: str
    method: Method
    seed: int
    args: tuple[str, ...]
    command: str = "search"  # or "train"


def parse_seeds(text: str) -> tuple[int, ...]:
    """``'0,1,2'`` -> ``(0, 1, 2)``; raises :class:`UserError` naming ``--seeds``."""
    try:
        seeds = tuple(int(s) for s in text.split(","))
    except ValueError:
        raise UserError(f"--seeds must be comma-separated integers, got {text!r}") from None
    if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds must be distinct integers >= 0, got {text!r}")
    return seeds


def parse_methods(text: str | None) -> tuple[str, ...]:
    """``'random,evolution'`` -> ``('random', 'evolution')``; ``None``: all methods."""
    if text is None:
        return tuple(METHODS)
    keys = tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in keys if k not in METHODS]
    if unknown or not keys:
        raise UserError(f"--methods: unknown {', '.join(unknown) or '(empty)'}; expected some of "
                        f"{', '.join(METHODS)}")
    return keys


def nb201_study(scale: str, seeds: tuple[int, ...], methods: tuple[str, ...], data: Path | None,
                data_dir: Path) -> list[SearchSpec]:
    """The searches of the study at ``scale``, in run order (table methods first: they take seconds).

    Args:
        data: the CIFAR-10 training set (``full``), or ``None`` for the embedded sample.
        data_dir: where the ``full`` study keeps its prepared training half (:mod:`.data`).
    """
    if scale not in SCALES:
        raise UserError(f"unknown scale {scale!r}; expected one of {', '.join(SCALES)}")
    if scale == "full" and data is None:
        raise UserError("--data is required for the study (the 50,000-image CIFAR-10 training set); "
                        "--demo and --tiny run on the embedded sample")
    specs = []
    order = sorted(methods, key=lambda k: (METHODS[k].supernet, list(METHODS).index(k)))
    for key in order:
        method = METHODS[key]
        for seed in seeds:
            args = ["--algo", method.algo, "--seed", str(seed), *_SCALE_ARGS[scale][key]]
            if method.supernet and data is not None:
                # GOLD-NAS is one-level: it gets the training half only; DARTS splits the 50k itself.
                path = data_dir / TRAIN_HALF_FILE if key == "goldnas" and scale == "full" else data
                args += ["--data", str(path)]
            specs.append(SearchSpec(f"{key}-s{seed}", method, seed, tuple(args)))
    return specs
