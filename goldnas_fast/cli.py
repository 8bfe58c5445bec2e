"""The ``goldnas-fast`` command line: ``search``, ``train`` and ``nb201`` subcommands.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and ``run(args) -> int``.
User errors (:class:`goldnas_fast.errors.UserError`) print one line and exit with status 2; an
interrupt (Ctrl-C) exits with status 130 after saying what the run directory kept.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from goldnas_fast.errors import UserError

SUBCOMMANDS = {
    "search": ("goldnas_fast.search.cli", "run a GOLD-NAS, DARTS, random or evolution search"),
    "train": ("goldnas_fast.train.cli", "train an architecture with a documented protocol"),
    "nb201": ("goldnas_fast.nb201.cli", "print the NAS-Bench-201 table entry of an architecture"),
    "experiment": ("goldnas_fast.experiment.cli", "run the NAS-Bench-201 study of RESULTS.md and write its tables"),
}


DESCRIPTION = ("Fused, pruning-aware NAS supernets: run a search, train an architecture, or look one up "
               "in NAS-Bench-201.")
EPILOG = "Run 'goldnas-fast COMMAND --help' for the options of a command."


def version() -> str:
    """The installed distribution's version, or the package's own where no metadata exists (source tree)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("goldnas_fast")
    except PackageNotFoundError:
        from goldnas_fast import __version__

        return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="goldnas-fast", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = parser.add_subparsers(title="commands", dest="command", metavar="{" + ",".join(SUBCOMMANDS) + "}")
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    from goldnas_fast.runs import opened_run_dirs

    opened_before = len(opened_run_dirs())
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except UserError as exc:
        print(f"goldnas-fast {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        _end_progress_line()
        print(f"goldnas-fast {args.command}: interrupted; {_kept(opened_before)}", file=sys.stderr)
        return 130


def _kept(opened_before: int) -> str:
    from goldnas_fast.runs import describe_kept, opened_run_dirs

    opened = opened_run_dirs()[opened_before:]
    if not opened:
        return "no run directory was opened by this process, so nothing was written"
    return describe_kept(opened[-1])


def _end_progress_line() -> None:
    """Ends the line a progress bar was drawing on stderr, so the message that follows gets its own line."""
    from goldnas_fast.progress import interactive

    bars = []
    if "tqdm" in sys.modules:
        from tqdm import tqdm

        bars = list(getattr(tqdm, "_instances", ()))
    for bar in bars:
        bar.close()  # draws its last state and ends its line
    if not bars and interactive():
        print(file=sys.stderr)  # the terminal echoed ^C where the cursor was


if __name__ == "__main__":  # also the entry of ``torchrun -m goldnas_fast.cli``
    # Under torchrun, record() hands a failing rank's traceback to the launcher's error summary.
    from torch.distributed.elastic.multiprocessing.errors import record

    sys.exit(record(main)())
