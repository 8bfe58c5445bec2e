"""Typed search configurations: every option of ``goldnas-fast search`` is a field of one dataclass.

Each field carries the command-line option that sets it (:func:`option`), so an out-of-range value is
reported under the name the user typed (:meth:`SearchConfig.option_of`) without reading any message
text. Defaults live here and in the algorithm's own hyper-parameter dataclasses (the GOLD-NAS
controller's, the DARTS protocol's); a field whose default depends on the space or on the data is
``None`` until :meth:`SearchConfig.from_options` resolves it.

:meth:`SearchConfig.record` is what ``config.json`` holds: a run directory belongs to it, and a resumed
run must match it.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from goldnas_fast.errors import ConfigError, UserError

if TYPE_CHECKING:
    from goldnas_fast.search.gpu import StepOptions
    from goldnas_fast.spaces.adapter import SearchSpace

__all__ = ["option", "space_class_of", "SearchConfig", "SupernetConfig", "EMBEDDED_SAMPLE_RECORD"]

EMBEDDED_SAMPLE_RECORD = "embedded-sample"
"""How ``config.json`` records ``--data`` left unset (the embedded sample)."""

SAMPLE_EPOCHS = 30  # the demo on the embedded sample must finish in minutes on a CPU

ConfigT = TypeVar("ConfigT", bound="SearchConfig")


def option(default: Any, flag: str) -> Any:
    """A config field with ``default``, set on the command line by ``flag``."""
    return dataclasses.field(default=default, metadata={"flag": flag})


def space_class_of(name: Any) -> type[SearchSpace] | None:
    """The adapter class of space ``name``; ``None`` if no space has that name."""
    from goldnas_fast.spaces import SPACES, space_class

    return space_class(name) if isinstance(name, str) and name in SPACES else None


def _int_at_least(cfg: Any, name: str, low: int, optional: bool = False) -> None:
    value = getattr(cfg, name)
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(type(cfg).__name__, name, f"an int >= {low}", value)


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """The options every search has.

    Attributes:
        space: search space name (``goldnas_fast.spaces.SPACES``).
        seed: run seed.
        data: CIFAR-10 location; ``None`` is the small real sample embedded in the package.
        max_train: use only the first this many training images.
        device: ``cpu`` or ``cuda[:i]``.
    """

    algo: ClassVar[str] = ""
    spaces: ClassVar[tuple[str, ...] | None] = None  # the spaces this algorithm searches; None: every registered one

    space: str = option("nb201", "--space")
    seed: int = option(0, "--seed")
    data: str | None = option(None, "--data")
    max_train: int | None = option(None, "--max-train")
    device: str = option("cpu", "--device")

    def __post_init__(self) -> None:
        from goldnas_fast.spaces import SPACES

        if self.space not in SPACES:
            raise UserError(f"unknown --space {self.space!r}; expected one of {', '.join(SPACES)}")
        if self.spaces is not None and self.space not in self.spaces:
            raise UserError(f"--algo {self.algo} {self.space_note()}; use --space {' or '.join(self.spaces)}")
        _int_at_least(self, "seed", 0)
        _int_at_least(self, "max_train", 1, optional=True)

    def space_note(self) -> str:
        """Why this algorithm searches only :attr:`spaces` (completes "--algo NAME ...")."""
        return "searches " + " or ".join(self.spaces or ())

    @property
    def embedded_sample(self) -> bool:
        """Whether the search runs on the embedded sample (``data`` unset)."""
        return self.data is None

    @classmethod
    def option_of(cls, field: str) -> str | None:
        """The command-line option of ``field`` (``None`` if no option sets it)."""
        for f in dataclasses.fields(cls):
            if f.name == field:
                return f.metadata.get("flag")
        return None

    @classmethod
    def context_defaults(cls, given: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults that depend on other fields (the space, the data); ``given`` holds the set fields."""
        return {}

    @classmethod
    def from_options(cls: type[ConfigT], options: Mapping[str, Any]) -> ConfigT:
        """The config of ``options`` (e.g. ``vars(args)``): unset (``None``) or unknown keys are left out,
        so their defaults apply.

        Raises:
            UserError: a field out of range, naming its option.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        given = {k: v for k, v in options.items() if k in names and v is not None}
        try:
            return cls(**{**cls.context_defaults(given), **given})
        except ConfigError as exc:
            flag = cls.option_of(exc.field)
            if flag is None:
                raise UserError(str(exc)) from None
            raise exc.for_option(flag) from None

    def record(self) -> dict[str, Any]:
        """The JSON-able configuration that ``config.json`` records (the device only by its type)."""
        return {"space": self.space, "algo": self.algo, "seed": self.seed,
                "data": str(Path(self.data).resolve()) if self.data else EMBEDDED_SAMPLE_RECORD,
                "max_train": self.max_train}


@dataclasses.dataclass(frozen=True)
class SupernetConfig(SearchConfig):
    """The options of a search that trains a supernet.

    Attributes:
        epochs: maximum epochs (``None``: the algorithm's default, shorter on the embedded sample).
        batch_size: global batch size (``None``: the space's, ``SearchSpace.search_defaults``).
        C: initial channels (``None``: the space's).
        N: NAS-Bench-201 cells per stage (``None``: the space's; fewer on the embedded sample).
        layers: GOLD-NAS space cells.
        ops: GOLD-NAS space candidate operators (``None``: the space's default set).
        backend: cell backend, ``'fused'`` or ``'reference'``.
        lean: recompute operator activations in backward.
        precision: ``'fp32'``, ``'tf32'`` or ``'bf16'`` (:mod:`goldnas_fast.precision`). The default stays
            fp32: a faster default needs searches with it that find architectures of the same quality
            (the same NAS-Bench-201 table accuracy within seed noise, over at least 2 seeds on real data),
            measured on a GPU.
        cuda_graphs: replay each step from a captured CUDA graph (:mod:`goldnas_fast.search.gpu`); a speed
            option, not part of the run's record.
    """

    default_epochs: ClassVar[int] = 100
    sample_epochs: ClassVar[int] = SAMPLE_EPOCHS  # on the embedded sample

    epochs: int | None = option(None, "--epochs")
    batch_size: int | None = option(None, "--batch-size")
    C: int | None = option(None, "--C")
    N: int | None = option(None, "--N")
    layers: int = option(14, "--layers")
    ops: tuple[str, ...] | None = option(None, "--ops")
    backend: str = option("fused", "--backend")
    lean: bool = option(False, "--lean")
    precision: str = option("fp32", "--precision")
    cuda_graphs: bool = option(False, "--cuda-graphs")

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("epochs", "batch_size", "C", "layers"):
            _int_at_least(self, name, 1)
        _int_at_least(self, "N", 1, optional=True)
        from goldnas_fast.devices import parse_device
        from goldnas_fast.precision import PRECISIONS

        if self.precision not in PRECISIONS:
            raise ConfigError(type(self).__name__, "precision", f"one of {', '.join(PRECISIONS)}", self.precision)
        self.steps().check(parse_device(self.device))

    def steps(self) -> StepOptions:
        """How the search runs its steps (precision, CUDA graphs)."""
        from goldnas_fast.search.gpu import StepOptions

        return StepOptions(precision=self.precision, cuda_graphs=self.cuda_graphs)

    @classmethod
    def context_defaults(cls, given: Mapping[str, Any]) -> dict[str, Any]:
        space, sample = space_class_of(given.get("space", cls.space)), given.get("data") is None
        out = space.search_defaults(sample) if space is not None else {}  # an unknown space: __post_init__ says so
        out["epochs"] = cls.sample_epochs if sample else cls.default_epochs
        return out

    @classmethod
    def from_options(cls: type[ConfigT], options: Mapping[str, Any]) -> ConfigT:
        options = dict(options)
        if isinstance(options.get("ops"), str):
            options["ops"] = tuple(options["ops"].split(","))
        return super().from_options(options)

    def space_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`goldnas_fast.spaces.make_space` for this supernet."""
        from goldnas_fast.spaces import space_class

        return space_class(self.space).space_kwargs(self)

    def record(self) -> dict[str, Any]:
        from goldnas_fast.devices import parse_device

        out = {**super().record(), "epochs": self.epochs, "batch_size": self.batch_size, "C": self.C,
               "backend": self.backend, "lean": self.lean, "device_type": parse_device(self.device).type}
        if self.precision != "fp32":  # fp32 runs keep the configuration of earlier versions, so they resume
            out["precision"] = self.precision
        from goldnas_fast.spaces import space_class

        return {**out, **space_class(self.space).record(self)}
