"""Run directories: ownership checks, per-epoch JSON logs, atomic checkpoints, resume.

A run directory belongs to one configuration: ``config.json`` records it, and a later run with another
configuration is refused instead of overwriting anything. Checkpoints are written to a temporary file
and renamed, so an interrupted write never leaves a torn checkpoint behind.
"""
from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from goldnas_fast.errors import UserError

__all__ = ["RunDir", "atomic_write_bytes", "atomic_write_json", "opened_run_dirs", "describe_kept", "resume_note"]

_OPENED: list[Path] = []  # run directories opened by this process, oldest first


def opened_run_dirs() -> list[Path]:
    """The run directories this process has opened (created or resumed), oldest first.

    The command line compares this list before and after a command to tell, when it is interrupted,
    which run directory the command wrote to (a search's default ``--out`` is only chosen inside it).
    """
    return list(_OPENED)


def describe_kept(path: Path) -> str:
    """What an interrupted run left in ``path``, in words: the checkpoint's epoch, or the files there."""
    checkpoint = path / RunDir.CHECKPOINT
    if checkpoint.exists():
        try:
            state = torch.load(checkpoint, map_location="cpu", weights_only=False, mmap=True)
            epoch = int(state["epochs_done"] if "epochs_done" in state else state["epoch"])
        except Exception:  # noqa: BLE001 - this only words a message; the file is checked on resume
            return f"{path} keeps {RunDir.CHECKPOINT}; continue with --resume"
        return f"{path} keeps the checkpoint of epoch {epoch}; continue with --resume"
    files = sorted(p.name for p in path.iterdir() if p.is_file() and not p.name.startswith(".")) \
        if path.is_dir() else []
    held = ", ".join(files) if files else "nothing"
    return (f"no epoch was completed, so no checkpoint was written; {path} holds {held} "
            "(--resume starts it from epoch 1)")


def resume_note(path: Path, done: int, total: int, *, finished: bool, what: str = "run",
                reason: str | None = None) -> str:
    """What ``--resume`` found in ``path``: a finished run (``done`` of ``total`` epochs; ``reason``, why it
    stopped), the epoch an unfinished one continues after, or no checkpoint yet."""
    if done and finished:
        why = f" (stop: {reason})" if reason else ""
        return f"{path}: the {what} had already finished after epoch {done}/{total}{why}; writing its result again"
    if done:
        return f"resuming {path} after epoch {done}/{total}"
    return f"resuming {path} from the start (it holds no checkpoint yet)"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically (temporary file in the same folder, fsync, rename).

    The file gets the mode an ordinary new file gets (``0o666`` less the umask, plus any default ACL):
    the temporary file is created with ``os.open(..., 0o666)``, not ``mkstemp``, whose ``0o600`` the
    rename would keep and so hide the results from the colleagues the umask admits.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _create_temp(path: Path) -> tuple[int, Path]:
    """Creates a new, uniquely named file next to ``path``; returns its descriptor and path."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a temporary file next to {path}")


def atomic_write_json(path: Path, obj: Any) -> None:
    """Writes ``obj`` as indented JSON atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


class RunDir:
    """One run's output directory.

    Args:
        path: the directory (created if absent).
        kind: what runs here (``'search'``, ``'train'``); recorded and checked.
        config: the JSON-able configuration that must match to write into or resume an existing run.
        resume: continue from the last checkpoint; without it an existing run directory is refused.
    """

    CHECKPOINT = "checkpoint.pt"

    def __init__(self, path: str | Path, kind: str, config: Mapping[str, Any], resume: bool = False) -> None:
        self.path = Path(path)
        self.kind = kind
        self.config = self.check(path, kind, config, resume)
        config_file = self.path / "config.json"
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            if not config_file.exists():
                atomic_write_json(config_file, {"kind": kind, "config": self.config})
        except OSError as exc:
            raise UserError(f"--out {self.path}: cannot create the run directory ({exc})") from None
        _OPENED.append(self.path)

    @staticmethod
    def check(path: str | Path, kind: str, config: Mapping[str, Any], resume: bool = False) -> dict[str, Any]:
        """Raises :class:`UserError` if the constructor would refuse ``path``; writes nothing.

        Lets a command refuse a conflicting ``--out`` before spending time on data and models, and create
        the directory only once everything else was validated. Returns the normalized configuration.
        """
        path = Path(path)
        config = json.loads(json.dumps(dict(config)))  # normalized, JSON-only
        config_file = path / "config.json"
        if path.exists() and not path.is_dir():
            raise UserError(f"--out {path} exists and is not a directory")
        if config_file.exists():
            try:
                saved = json.loads(config_file.read_text())
                if not isinstance(saved, dict):
                    raise ValueError(f"expected a JSON object, got {type(saved).__name__}")
            except (OSError, ValueError) as exc:
                raise UserError(f"--out {path}: config.json is unreadable ({exc}); "
                                "refusing to touch the directory") from None
            saved_config = saved.get("config") if isinstance(saved.get("config"), dict) else {}
            if saved.get("kind") != kind or saved.get("config") != config:
                diff = sorted(k for k in set(config) | set(saved_config) if config.get(k) != saved_config.get(k))
                raise UserError(f"--out {path} holds another {saved.get('kind', 'unknown')} run "
                                f"(differs in: {', '.join(diff) or 'kind'}); choose another --out")
            if not resume:
                raise UserError(f"--out {path} already holds this run; pass --resume to continue it "
                                "or choose another --out")
        elif path.is_dir() and any(path.iterdir()):
            raise UserError(f"--out {path} is not empty and holds no goldnas_fast run; choose another --out")
        return config

    @property
    def log_path(self) -> Path:
        return self.path / "log.jsonl"

    def log(self, record: Mapping[str, Any]) -> None:
        """Appends one JSON line to ``log.jsonl``."""
        with open(self.log_path, "a") as f:
            f.write(json.dumps(dict(record), sort_keys=True) + "\n")

    def truncate_log(self, epochs_done: int) -> None:
        """Drops log lines of epochs after the checkpoint (written before an interruption)."""
        if not self.log_path.exists():
            return
        keep = []
        for line in self.log_path.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:  # a line torn by the interruption
                continue
            if isinstance(record, dict) and record.get("epoch", 0) <= epochs_done:
                keep.append(line)
        atomic_write_bytes(self.log_path, "".join(ln + "\n" for ln in keep).encode())

    def save_checkpoint(self, state: Mapping[str, Any]) -> None:
        """Saves ``state`` (tensors, numbers, JSON-able objects) atomically."""
        import io

        buf = io.BytesIO()
        torch.save(dict(state), buf)
        atomic_write_bytes(self.path / self.CHECKPOINT, buf.getvalue())

    def load_checkpoint(self) -> dict[str, Any] | None:
        """The last checkpoint, or None if the run has none yet."""
        path = self.path / self.CHECKPOINT
        if not path.exists():
            return None
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:  # a corrupt file must be reported, not crash with a traceback
            raise UserError(f"checkpoint {path} is unreadable ({type(exc).__name__}: {exc})") from None

    def write_result(self, result: Mapping[str, Any]) -> None:
        atomic_write_json(self.path / "result.json", dict(result))
