"""Runs a study's searches as ``goldnas-fast search`` subprocesses: concurrently, resumable, one GPU each.

State of a run directory ``OUT/runs/NAME``:

- ``result.json`` present: finished, skipped;
- ``config.json`` present, no result: unfinished (interrupted), continued with ``--resume``;
- absent or empty: started fresh.

The runner keeps its own record per run in ``OUT/meta/NAME.json`` (command, device and its name, host, every
attempt's exit status and wall time) and the subprocess's output in ``OUT/logs/NAME.log``; the search's own
files stay untouched. A lock on ``OUT/.lock`` keeps a second runner out of the same study, and on Linux each
subprocess is sent SIGTERM when the runner dies, so no orphan keeps writing into a run directory.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from goldnas_fast.errors import UserError
from goldnas_fast.experiment.study import SearchSpec
from goldnas_fast.runs import atomic_write_json

__all__ = ["run_state", "RunOutcome", "run_searches", "default_jobs", "cpu_name", "gpu_names", "StudyLock",
           "PER_GPU_JOBS"]

PER_GPU_JOBS = 3
"""Concurrent searches on a machine with one GPU (not measured yet; see ``RESULTS.md``, "Concurrency")."""
POLL_S = 0.2
GRACE_S = 30.0  # after SIGINT, how long a search may take to leave before it is killed


def run_state(run_dir: Path) -> str:
    """``'done'``, ``'partial'`` or ``'new'`` (module docstring)."""
    if (run_dir / "result.json").is_file():
        return "done"
    if (run_dir / "config.json").is_file():
        return "partial"
    return "new"


def cpu_name() -> str:
    """The CPU model (``/proc/cpuinfo``) and core count, e.g. ``'AMD EPYC 7B13 (2 cores)'``."""
    model = platform.machine()  # platform.processor() would run a subprocess
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model} ({os.cpu_count()} cores)"


def gpu_names() -> list[str]:
    """Names of the CUDA devices this process sees (empty without CUDA)."""
    import torch

    if not torch.cuda.is_available():
        return []
    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


def default_jobs(device: str, n_gpus: int, tiny: bool = False) -> int:
    """1 on CPU (a search uses every core; tiny searches: up to 4, one thread each), one per GPU on several
    GPUs, :data:`PER_GPU_JOBS` on one."""
    if device == "cpu" or n_gpus == 0:
        return max(1, min(4, os.cpu_count() or 1)) if tiny else 1
    return n_gpus if n_gpus > 1 else PER_GPU_JOBS


class StudyLock:
    """An exclusive ``flock`` on ``OUT/.lock`` for the runner's lifetime (released when the process dies)."""

    def __init__(self, out: Path) -> None:
        import fcntl

        out.mkdir(parents=True, exist_ok=True)
        self._file = open(out / ".lock", "a+")
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._file.seek(0)
            holder = self._file.read().strip() or "unknown"
            self._file.close()
            raise UserError(f"--out {out}: another experiment runner works in it (pid {holder})") from None
        self._file.seek(0)
        self._file.truncate()
        self._file.write(str(os.getpid()))
        self._file.flush()

    def release(self) -> None:
        self._file.close()


@dataclass
class RunOutcome:
    """What happened to one search in this invocation."""

    spec: SearchSpec
    state_before: str                  # 'done', 'partial' or 'new'
    returncode: int | None = None      # None: skipped
    wall_s: float = 0.0
    log: Path | None = None


@dataclass
class _Running:
    spec: SearchSpec
    proc: subprocess.Popen
    log: IO[str]
    gpu: int | None
    started: float
    outcome: RunOutcome
    meta: dict[str, Any] = field(default_factory=dict)


def _set_pdeathsig() -> None:  # runs in the child before exec
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class _Scheduler:
    def __init__(self, out: Path, device: str, jobs: int, gpus: list[str], threads: int | None,
                 say) -> None:
        self.out, self.device, self.jobs, self.gpus, self.say = out, device, jobs, gpus, say
        self.threads = threads
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        # the child sees one GPU: the parent's i-th visible device, by the parent's own naming
        self.visible = [v.strip() for v in visible.split(",")] if visible else [str(i) for i in range(len(gpus))]
        self.running: list[_Running] = []
        from goldnas_fast.experiment.report import git_commit

        self.commit = git_commit(Path(__file__).resolve().parents[2])

    def _pick_gpu(self) -> int | None:
        if self.device == "cpu" or not self.gpus:
            return None
        load = [sum(r.gpu == i for r in self.running) for i in range(len(self.gpus))]
        return min(range(len(self.gpus)), key=load.__getitem__)

    def start(self, spec: SearchSpec, outcome: RunOutcome) -> None:
        run_dir = self.out / "runs" / spec.name
        gpu = self._pick_gpu() if spec.method.supernet else None
        device = ("cuda" if gpu is not None else self.device) if spec.method.supernet else "cpu"
        cmd = [sys.executable, "-m", "goldnas_fast.cli", spec.command, *spec.args, "--out", str(run_dir)]
        if spec.method.supernet:
            cmd += ["--device", device]
        if outcome.state_before == "partial":
            cmd.append("--resume")
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = self.visible[gpu]
        if self.threads is not None and "OMP_NUM_THREADS" not in os.environ:
            env["OMP_NUM_THREADS"] = str(self.threads)
        log_path = self.out / "logs" / f"{spec.name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "a")
        log.write(f"\n=== {_now()} {' '.join(cmd)}\n")
        log.flush()
        meta_path = self.out / "meta" / f"{spec.name}.json"
        meta = _read_json(meta_path) or {"attempts": []}
        device_name = self.gpus[gpu] if gpu is not None else cpu_name()
        meta.update({"name": spec.name, "method": spec.method.key, "seed": spec.seed, "command": cmd[1:],
                     "device": device, "device_name": device_name, "host": socket.gethostname(),
                     "commit": self.commit})
        meta["attempts"].append({"started": _now(), "resumed": outcome.state_before == "partial"})
        atomic_write_json(meta_path, meta)
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                preexec_fn=_set_pdeathsig if sys.platform.startswith("linux") else None)
        where = f" on {device}" + (f" (GPU {self.visible[gpu]}: {device_name})" if gpu is not None else "")
        self.say(f"start {spec.name}{' (resume)' if outcome.state_before == 'partial' else ''}{where}")
        self.running.append(_Running(spec, proc, log, gpu, time.perf_counter(), outcome, meta))

    def reap(self) -> list[_Running]:
        done = [r for r in self.running if r.proc.poll() is not None]
        for r in done:
            self.running.remove(r)
            r.log.close()
            r.outcome.returncode = r.proc.returncode
            r.outcome.wall_s = time.perf_counter() - r.started
            r.meta["attempts"][-1].update({"returncode": r.proc.returncode, "wall_s": round(r.outcome.wall_s, 2)})
            atomic_write_json(self.out / "meta" / f"{r.spec.name}.json", r.meta)
        return done

    def stop_all(self) -> None:
        for r in self.running:
            if r.proc.poll() is None:
                r.proc.send_signal(signal.SIGINT)  # the search keeps its last per-epoch checkpoint
        deadline = time.perf_counter() + GRACE_S
        for r in self.running:
            try:
                r.proc.wait(timeout=max(0.1, deadline - time.perf_counter()))
            except subprocess.TimeoutExpired:
                r.proc.kill()
                r.proc.wait()
        self.reap()


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _last_line(path: Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1].split("\r")[-1] if lines else ""


def run_searches(specs: Sequence[SearchSpec], out: Path, device: str, jobs: int, gpus: list[str],
                 say=print) -> list[RunOutcome]:
    """Runs the unfinished searches of ``specs`` under ``out/runs``, at most ``jobs`` at once.

    Finished runs are skipped; a failed search does not stop the others. On KeyboardInterrupt or
    SIGTERM the running searches get SIGINT (they keep their last checkpoint), then the interrupt is
    re-raised.
    """
    outcomes = [RunOutcome(s, run_state(out / "runs" / s.name)) for s in specs]
    todo = []
    for o in outcomes:
        o.log = out / "logs" / f"{o.spec.name}.log"
        if o.state_before == "done":
            say(f"skip {o.spec.name}: finished ({out / 'runs' / o.spec.name / 'result.json'})")
        else:
            todo.append(o)
    # CPU searches share the cores; a GPU search's host thread needs few
    threads = max(1, (os.cpu_count() or 1) // jobs) if device == "cpu" else None
    sched = _Scheduler(out, device, jobs, gpus, threads, say)
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        queue = list(todo)
        while queue or sched.running:
            while queue and len(sched.running) < jobs:
                sched.start(queue[0].spec, queue.pop(0))
            time.sleep(POLL_S)
            for r in sched.reap():
                o = r.outcome
                if o.returncode == 0:
                    say(f"done  {o.spec.name} in {o.wall_s:.0f} s")
                else:
                    say(f"FAILED {o.spec.name} (exit {o.returncode}): {_last_line(r.outcome.log)} "
                        f"[log: {r.outcome.log}]")
    except KeyboardInterrupt:
        say(f"interrupted: stopping {len(sched.running)} running search(es); run the same command again "
            "to resume")
        sched.stop_all()
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    return outcomes
