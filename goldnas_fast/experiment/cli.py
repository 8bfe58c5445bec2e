"""``goldnas-fast experiment``: run the NAS-Bench-201 study of ``RESULTS.md`` and write its tables.

Examples::

    goldnas-fast experiment nb201 --data /data/cifar10 --out runs/study --device cuda
    goldnas-fast experiment nb201 --tiny --out /tmp/tiny                    # whole pipeline, about a minute
    goldnas-fast experiment nb201 --methods random,evolution --data D --out runs/study   # table methods only
    goldnas-fast experiment report --out runs/study --to RESULTS.md --section nb201 --figures docs/figures

``nb201`` runs every unfinished search (see :mod:`goldnas_fast.experiment.runner`), then writes
``OUT/report.md`` and ``OUT/figures/``; running it again after an interruption resumes the study.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from goldnas_fast.errors import UserError

__all__ = ["add_arguments", "run"]

TITLES = {
    "full": "NAS-Bench-201 study (CIFAR-10, NB201 25k/25k split)",
    "demo": "Demo scale, not the study: embedded 512-image CIFAR-10 sample, smaller supernet (N = 2), CPU",
    "tiny": "Tiny smoke run, not a result: embedded sample, C = 4, N = 1, one or two epochs",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="study", metavar="{nb201,goldnas-space,report}")
    p = sub.add_parser("nb201", help="GOLD-NAS, DARTS-V1, random search and evolution on NAS-Bench-201",
                       description="Runs the NAS-Bench-201 study (3 seeds per method by default) and writes "
                                   "OUT/report.md and OUT/figures/.")
    p.add_argument("--data", help="CIFAR-10 training set (all 50,000 images: folder of .npz shards, python "
                                  "batches or one .npz); not needed with --demo/--tiny (embedded sample)")
    p.add_argument("--out", required=True, help="study directory (runs/, logs/, meta/, report.md, figures/)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (each search gets one GPU; default cpu)")
    p.add_argument("--jobs", type=int, default=None,
                   help="searches at once (default: 1 on CPU (--tiny: up to 4), one per GPU on several GPUs, "
                        "3 on one GPU)")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    p.add_argument("--methods", default=None, help="run only these: goldnas,darts,random,evolution (default all; "
                                                   "the report lists the others as not yet run)")
    scale = p.add_mutually_exclusive_group()
    scale.add_argument("--tiny", action="store_true", help="smoke run of the whole pipeline (about a minute)")
    scale.add_argument("--demo", action="store_true", help="embedded sample with the search's sample defaults "
                                                           "(minutes on a CPU; not the study)")
    r = sub.add_parser("report", help="write a study's tables and figure again (no search runs)",
                       description="Writes the tables of OUT into OUT/report.md, or into a section of --to.")
    r.add_argument("--out", required=True, help="study directory written by `experiment nb201`")
    r.add_argument("--to", help="markdown file whose generated section is replaced (e.g. RESULTS.md)")
    r.add_argument("--section", default=None, help="section name in --to (default: the study's scale)")
    r.add_argument("--figures", help="folder for the figure (default OUT/figures)")
    from goldnas_fast.experiment.space import add_space_arguments

    add_space_arguments(sub)


# --------------------------------------------------------------------------------------------- study.json
def _study_file(out: Path, shown: str, scale: str, data: Path | None, seeds: tuple[int, ...]) -> dict[str, Any]:
    """Creates or checks ``OUT/study.json``: a study directory keeps its scale and data; seeds accumulate."""
    path = out / "study.json"
    want = {"study": "nb201", "scale": scale, "data": str(data) if data else None}
    saved: dict[str, Any] = {}
    if path.is_file():
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise UserError(f"--out {out}: study.json is unreadable ({exc})") from None
        diff = [k for k in want if saved.get(k) != want[k]]
        if diff:
            raise UserError(f"--out {out} holds another study (differs in {', '.join(diff)}: "
                            f"{', '.join(f'{k}={saved.get(k)!r}' for k in diff)}); choose another --out")
    elif out.is_dir() and any(p.name != ".lock" for p in out.iterdir()):
        raise UserError(f"--out {out} is not empty and holds no study; choose another --out")
    study = {**want, "seeds": sorted(set(saved.get("seeds", [])) | set(seeds)), "out": shown}
    from goldnas_fast.runs import atomic_write_json

    atomic_write_json(path, study)
    return study


def _load_study(out: Path) -> dict[str, Any]:
    path = out / "study.json"
    if not path.is_file():
        raise UserError(f"--out {out}: no study.json; run `goldnas-fast experiment nb201 --out {out}` first")
    try:
        study = json.loads(path.read_text())
        study["seeds"] = [int(s) for s in study["seeds"]]
        if study["scale"] not in TITLES:
            raise ValueError(f"unknown scale {study['scale']!r}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"--out {out}: study.json is unreadable ({exc})") from None
    return study


# --------------------------------------------------------------------------------------------- report
def write_report(out: Path, study: dict[str, Any], to: Path | None = None, section: str | None = None,
                 figures: Path | None = None) -> Path:
    """Writes the study's markdown block (into ``to``'s section, else ``OUT/report.md``) and its figure."""
    from goldnas_fast.experiment.plots import plot_front
    from goldnas_fast.experiment.report import collect, front_record, render, splice
    from goldnas_fast.experiment.study import METHODS, nb201_study

    data = Path(study["data"]) if study.get("data") else None
    specs = nb201_study(study["scale"], tuple(study["seeds"]), tuple(METHODS), data, out / "data")
    records = collect(out, specs)
    section = section or study["scale"]
    target = to if to is not None else out / "report.md"
    fig = (figures if figures is not None else out / "figures") / f"{section}-front.png"
    rec = front_record(records)
    points = []
    if rec is not None:
        entries = list(rec.result.get("recorded", [])) + [rec.result["final"]]
        points = [(e["flops_m"], e["cifar10_test_acc_200"]) for e in entries]
    plot_front(fig, points, label=f"{rec.spec.name}: recorded architectures" if rec else "",
               title=f"NAS-Bench-201: table front{' and ' + rec.spec.name if rec else ''} ({study['scale']} scale)")
    link = os.path.relpath(fig.resolve(), target.resolve().parent)
    from goldnas_fast.experiment.trajectory import plot_trajectories, read_log

    logs = [(r.spec.name, read_log(out / "runs" / r.spec.name)) for r in records if r.spec.method.supernet]
    traj = plot_trajectories(logs, fig.with_name(f"{section}-trajectories.png"))
    traj_link = os.path.relpath(traj.resolve(), target.resolve().parent) if traj else None
    block = render(records, study, link, TITLES[study["scale"]], traj_link)
    if to is None:
        target.write_text(block)
    else:
        splice(target, section, block)
    return target


def _run_nb201(args: argparse.Namespace) -> int:
    from goldnas_fast.experiment.runner import StudyLock, default_jobs, gpu_names, run_searches
    from goldnas_fast.experiment.study import nb201_study, parse_methods, parse_seeds

    scale = "tiny" if args.tiny else "demo" if args.demo else "full"
    if args.demo and args.data:
        raise UserError("--demo runs on the embedded sample; drop --data (or drop --demo for the study)")
    seeds = parse_seeds(args.seeds)
    methods = parse_methods(args.methods)
    if args.device not in ("cpu", "cuda"):
        raise UserError(f"--device must be cpu or cuda, got {args.device!r}")
    gpus = gpu_names() if args.device == "cuda" else []
    if args.device == "cuda" and not gpus:
        raise UserError("--device cuda: no CUDA device is visible to this torch; use --device cpu")
    if args.jobs is not None and args.jobs < 1:
        raise UserError(f"--jobs must be >= 1, got {args.jobs}")
    jobs = args.jobs or default_jobs(args.device, len(gpus), tiny=args.tiny)
    data = Path(args.data).expanduser().resolve() if args.data else None
    if data is not None and not data.exists():
        raise UserError(f"--data {args.data}: no such file or directory")
    out = Path(args.out).expanduser()
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a directory")
    lock = StudyLock(out)
    try:
        study = _study_file(out.resolve(), args.out, scale, data, seeds)
        specs = nb201_study(scale, seeds, methods, data, out.resolve() / "data")
        if scale == "full":
            _prepare_data(out.resolve(), data, methods, study)
        print(f"experiment nb201 ({scale}): {len(specs)} searches, {jobs} at once, device {args.device}"
              + (f" ({', '.join(gpus)})" if gpus else ""), flush=True)
        try:
            outcomes = run_searches(specs, out.resolve(), args.device, jobs, gpus,
                                    say=lambda s: print(s, flush=True))
        except KeyboardInterrupt:
            return 130
        failed = [o for o in outcomes if o.returncode not in (None, 0)]
        report = write_report(out.resolve(), _load_study(out.resolve()))
    finally:
        lock.release()
    print(f"report: {report}")
    if failed:
        print(f"{len(failed)} of {len(outcomes)} searches failed: "
              f"{', '.join(o.spec.name for o in failed)} (logs in {out / 'logs'}); run the same command again "
              "to retry them")
        return 1
    return 0


def _prepare_data(out: Path, data: Path, methods: tuple[str, ...], study: dict[str, Any]) -> None:
    from goldnas_fast.experiment.data import check_full_training_set, write_train_half
    from goldnas_fast.experiment.study import TRAIN_HALF_FILE

    if "goldnas" in methods:
        write_train_half(data, out / "data" / TRAIN_HALF_FILE)
    elif "darts" in methods and not study.get("data_checked"):
        check_full_training_set(data)
    else:
        return
    if not study.get("data_checked"):
        from goldnas_fast.runs import atomic_write_json

        atomic_write_json(out / "study.json", {**study, "data_checked": True})


def run(args: argparse.Namespace) -> int:
    if args.study == "nb201":
        return _run_nb201(args)
    if args.study == "report":
        out = Path(args.out).expanduser().resolve()
        target = write_report(out, _load_study(out), Path(args.to) if args.to else None, args.section,
                              Path(args.figures) if args.figures else None)
        print(f"report: {target}")
        return 0
    if args.study == "goldnas-space":
        from goldnas_fast.experiment.space import run_space

        return run_space(args)
    raise UserError("choose a study: goldnas-fast experiment {nb201,goldnas-space,report} --help")
