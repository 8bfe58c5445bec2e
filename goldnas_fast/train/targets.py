"""What a run trains: a NAS-Bench-201 architecture or a GOLD-NAS genotype, resolved from the command line.

Sources: ``--space nb201 --arch ARCH_OR_INDEX``, ``--space goldnas --genotype FILE.json``, or
``--from-search DIR`` (``DIR/result.json`` of a search: ``final_arch`` is an NB201 arch string,
``final_genotype`` a GOLD-NAS genotype as JSON). Everything is validated before a run directory is
touched; bad input raises :class:`~goldnas_fast.errors.UserError` naming the argument.
"""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

from torch import nn

from goldnas_fast.errors import UserError

__all__ = ["Target", "parse_arch_list", "resolve_target", "resolve_targets", "SPACES"]

SPACES = ("nb201", "goldnas")


@dataclasses.dataclass
class Target:
    """A resolved architecture.

    Attributes:
        space: ``'nb201'`` or ``'goldnas'``.
        record: JSON-able identity recorded in ``config.json``/``result.json`` (arch string and index,
            or the genotype's JSON).
        label: a short human-readable name.
        arch_index: official NB201 index (NB201 only).
        genotype: the parsed genotype object (GOLD-NAS only).
    """

    space: str
    record: dict[str, Any]
    label: str
    arch_index: int | None = None
    genotype: Any = None

    def build(self, init_channels: int, num_classes: int = 10, auxiliary: bool = False) -> nn.Module:
        """The evaluation network (weights drawn from the current torch RNG state)."""
        if self.space == "nb201":
            from goldnas_fast.nb201 import build_network

            return build_network(self.arch_index, C=init_channels, N=5, num_classes=num_classes)
        from goldnas_fast.spaces import goldnas

        return goldnas.build_network(self.genotype, C=init_channels, num_classes=num_classes, auxiliary=auxiliary)


def _nb201(arch: str, where: str) -> Target:
    from goldnas_fast.nb201 import arch_to_index, index_to_arch

    text = str(arch).strip()
    try:
        index = int(text) if text.lstrip("-").isdigit() else arch_to_index(text)
        arch_str = index_to_arch(index)
    except ValueError as exc:
        raise UserError(f"{where}: not a NAS-Bench-201 architecture ({exc})") from None
    return Target("nb201", {"arch": arch_str, "arch_index": index}, f"NB201 arch {index}", arch_index=index)


def _goldnas(obj: Any, where: str) -> Target:
    try:
        from goldnas_fast.spaces import goldnas
    except ImportError as exc:  # the space's module is not part of this installation yet
        raise UserError(f"{where}: the GOLD-NAS space is not available ({exc})") from None
    try:
        genotype = goldnas.Genotype.from_json(obj)
        record = genotype.to_json()
    except (ValueError, TypeError, KeyError) as exc:
        raise UserError(f"{where}: not a GOLD-NAS genotype ({type(exc).__name__}: {exc})") from None
    return Target("goldnas", {"genotype": record}, "GOLD-NAS genotype", genotype=genotype)


def _read_json(path: Path, what: str) -> Any:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UserError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise UserError(f"{what} {path} is unreadable ({exc})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{what} {path} is not valid JSON ({exc})") from None


def resolve_target(space: str | None, arch: str | None, genotype: str | None, from_search: str | None) -> Target:
    """Validates the command-line choice of architecture and returns it."""
    if from_search is not None:
        if arch is not None or genotype is not None:
            raise UserError("--from-search gives the architecture; do not combine it with --arch or --genotype")
        result = _read_json(Path(from_search) / "result.json", "--from-search: search result")
        if not isinstance(result, dict):
            raise UserError(f"--from-search: {from_search}/result.json is not a JSON object")
        where = f"--from-search {from_search}/result.json"
        if result.get("final_arch") is not None:
            found = _nb201(result["final_arch"], f"{where}: final_arch")
        elif result.get("final_genotype") is not None:
            found = _goldnas(result["final_genotype"], f"{where}: final_genotype")
        else:
            raise UserError(f"{where} has neither final_arch (NB201) nor final_genotype (GOLD-NAS); "
                            "is the search finished?")
        if space is not None and space != found.space:
            raise UserError(f"--space {space} does not match the search result's space ({found.space})")
        found.record["from_search"] = str(Path(from_search).resolve())
        return found
    if space is None:
        space = "nb201" if arch is not None else "goldnas" if genotype is not None else None
    if space not in SPACES:
        raise UserError(f"--space must be one of {', '.join(SPACES)} (or use --from-search), got {space!r}")
    if space == "nb201":
        if genotype is not None:
            raise UserError("--genotype belongs to --space goldnas; NB201 architectures are given with --arch")
        if arch is None:
            raise UserError("--space nb201 needs --arch ARCH_STRING_OR_INDEX")
        return _nb201(arch, "--arch")
    if arch is not None:
        raise UserError("--arch belongs to --space nb201; GOLD-NAS genotypes are given with --genotype FILE.json")
    if genotype is None:
        raise UserError("--space goldnas needs --genotype FILE.json")
    return _goldnas(_read_json(Path(genotype), "--genotype"), f"--genotype {genotype}")


_RANGE = re.compile(r"^(\d+)\s*-\s*(\d+)$")


def parse_arch_list(text: str) -> list[str]:
    """``--arch`` as a list: comma-separated NB201 indices, inclusive index ranges ``A-B`` and arch strings.

    ``"3,1462,100-110"`` gives 13 entries (``100-110`` includes both ends). Arch strings contain no commas
    or hyphens, so they mix freely with indices. Returns the entries as strings, in the given order.
    """
    items = [t.strip() for t in str(text).split(",")]
    if not items or any(not t for t in items):
        raise UserError(f"--arch: empty entry in the list {text!r}")
    out: list[str] = []
    for t in items:
        m = _RANGE.match(t)
        if m is None:
            out.append(t)
            continue
        lo, hi = int(m.group(1)), int(m.group(2))
        if lo > hi:
            raise UserError(f"--arch: range {t!r} runs backwards")
        out.extend(str(i) for i in range(lo, hi + 1))
    return out


def resolve_targets(space: str | None, arch: str | None, genotype: str | None,
                    from_search: str | None) -> list[Target]:
    """Like :func:`resolve_target`, but ``--arch`` may list several NB201 architectures
    (:func:`parse_arch_list`); each appears once."""
    if arch is None or ("," not in arch and _RANGE.match(arch.strip()) is None):
        return [resolve_target(space, arch, genotype, from_search)]
    targets = [resolve_target(space, a, genotype, from_search) for a in parse_arch_list(arch)]
    seen: set[int] = set()
    for t in targets:
        if t.arch_index in seen:
            raise UserError(f"--arch: architecture {t.arch_index} is listed twice")
        seen.add(t.arch_index)
    return targets
