"""The interface every search algorithm implements, so that one loop (:mod:`~goldnas_fast.search.runner`)
runs them all: build from a typed config, run epochs, checkpoint, and write the result.

An *epoch* is the algorithm's unit of work between two checkpoints: one pass over the training data
for a supernet search, one architecture evaluation for a table-query search. The loop calls
:meth:`SearchAlgorithm.run_epoch` until the algorithm's epoch limit or until a record says ``stop``,
logs each record to ``log.jsonl``, saves :meth:`~SearchAlgorithm.state_dict` after each epoch, and at
the end calls :meth:`~SearchAlgorithm.result`.
"""
from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from goldnas_fast.search.config import SearchConfig

if TYPE_CHECKING:
    from goldnas_fast.runs import RunDir
    from goldnas_fast.search.distributed import Context

__all__ = ["SearchAlgorithm", "Progress", "epoch_line"]

Progress = Callable[[dict[str, float]], None]
"""Called after each training step with ``{"n": images of this process's step}``."""


def epoch_line(r: dict[str, Any], flops_label: str = "FLOPs") -> str:
    """One line about a supernet epoch's record: loss, accuracy, pruning facts, FLOPs (labelled with
    ``flops_label``, which says whose FLOPs they are), time, stop reason."""
    parts = [f"epoch {r['epoch']}", f"loss {r['loss']:.3f}", f"acc {r['accuracy']:.1f}%"]
    if "lambda" in r:
        parts += [f"lambda {r['lambda']:.2e}", f"surviving {r['surviving']}", f"pruned {r['pruned']}"]
    if r.get("flops_m") is not None:
        parts.append(f"{flops_label} {r['flops_m']:.1f}M")
    parts.append(f"{r['seconds']:.0f}s")
    if r.get("stop_reason"):
        parts.append(f"stop: {r['stop_reason']}")
    return " | ".join(parts)


class SearchAlgorithm(ABC):
    """A search the generic loop can run, checkpoint and resume (module docstring).

    Subclasses set :attr:`config_type` and implement :meth:`build`, :meth:`run_epoch`,
    :meth:`state_dict`, :meth:`load_state_dict` and :meth:`result`; registering the class in
    :data:`goldnas_fast.search.registry.ALGORITHMS` makes it a ``--algo`` choice.
    """

    config_type: ClassVar[type[SearchConfig]]
    limit_reason: ClassVar[str] = "epoch_limit"
    """The stop reason recorded when the loop ends at :attr:`epochs` rather than at a record's ``stop``."""
    checkpoint_every: ClassVar[int] = 1
    """Epochs between checkpoints (the last epoch always gets one); a resumed run repeats the epochs after
    the last checkpoint, so only an algorithm with cheap epochs should raise it."""

    epochs: int
    """How many epochs the loop runs at most."""

    @classmethod
    @abstractmethod
    def build(cls, config: Any, ctx: Context) -> SearchAlgorithm:
        """Everything the search needs (data, supernet, optimizers), checked before any file is written.

        Raises:
            UserError: input that does not fit (data too small for the batch, an unknown operator, ...).
        """

    @abstractmethod
    def run_epoch(self, epoch: int, progress: Progress | None = None) -> dict[str, Any]:
        """Runs 0-based ``epoch``; returns its JSON-able record (``epoch`` 1-based, ``stop``, ``stop_reason``,
        ``recorded``, ...). The loop adds ``seconds``."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs to continue bit for bit (tensors and JSON-able values)."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores :meth:`state_dict`."""

    @abstractmethod
    def result(self, run_dir: RunDir, history: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
        """Writes ``result.json`` (and ``pareto.png``) from the epoch records, prints the summary, returns
        the result."""

    def run_context(self) -> contextlib.AbstractContextManager[Any]:
        """The context the loop runs every epoch in (e.g. the precision's global device flags)."""
        return contextlib.nullcontext()

    def progress_total(self) -> int | None:
        """Images one epoch trains on, over all processes, for the progress bar (``None``: no bar)."""
        return None

    def progress_note(self) -> str | None:
        """Host-side facts shown beside the progress bar (no device synchronisation)."""
        return None

    def epoch_line(self, record: dict[str, Any]) -> str | None:
        """The line printed after an epoch (``None``: print nothing)."""
        return epoch_line(record)


class SupernetSearch(SearchAlgorithm):
    """A search that trains a supernet on images (GOLD-NAS, DARTS): its loaders, progress total and run
    context come from one place. Subclasses set ``device`` and ``step_options`` in their constructor and
    call :meth:`attach` in :meth:`build`."""

    loaders: Any
    _images_per_epoch: int

    def attach(self, setup: Any, epochs: int, ctx: Context) -> None:
        """Takes the loaders of ``setup`` (:func:`goldnas_fast.search.supernet_setup.prepare_supernet`)."""
        self.loaders, self.epochs = setup.loaders, epochs
        self._images_per_epoch = len(setup.loaders[0]) * setup.batch * ctx.world_size

    def progress_total(self) -> int | None:
        return self._images_per_epoch

    def run_context(self) -> contextlib.AbstractContextManager[Any]:
        return self.step_options.run_context(self.device)
