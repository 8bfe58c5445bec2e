#!/usr/bin/env bash
# The whole GPU procedure in one command, on any machine with one CUDA GPU and a CUDA build of torch >= 2.11,
# without network and without ../shared: build the extension in place against that torch, run the CUDA
# tests, run every benchmark in GPU mode, write tables and JSON into OUTDIR, print a summary with each
# target of issues 14 and 16 beside its measured value.
#
# Usage: bash scripts/gpu_check.sh OUTDIR [DATA_NPZ]
#   DATA_NPZ        CIFAR-10 .npz (e.g. cifar10_train_0.npz): adds a 2-epoch search on real data
#   PYTHON          the interpreter that holds the CUDA torch (default python3)
#   GPU_CHECK_BUDGET  seconds for all steps together (default 480); also a hard deadline: no step gets
#                   more than what is left of it, and a step that finds too little left is skipped
#   GPU_CHECK_COMMIT  the commit to name in the report (default: git rev-parse, where .git is there)
# Optional: xautodl importable, or its wheel at .whl/xautodl-1.0.0-py3-none-any.whl, for the AutoDL rows.
#
# OUTDIR gets five files: summary.md (steps, targets, tables), results.json (all numbers), build.log,
# tests.log, bench.log. A step that fails or times out does not stop the others (only a failed build
# stops the rest: without the kernels nothing else means anything). Exit status 0 when every step
# passed, 1 otherwise, 2 when the machine is refused.
set -uo pipefail

# Per-step caps in seconds, estimated from ../shared/docs/gpu-baseline.md (one H200, 16 cores; an H100
# launches kernels as fast and has ~0.7x the memory bandwidth, which matters only for the large cases).
BUDGET_build=80            # 41 s measured with CMAKE_BUILD_PARALLEL_LEVEL=16
BUDGET_tests=50            # 246 CUDA tests in 20 s with -n 6 (more tests since)
BUDGET_mixed_sum=40        # --quick measured 22 s; --big adds the (256,64,64,64) case: ~6 x 67M randn on the host, ~8 s
BUDGET_node_sum=35         # --quick measured 30 s
BUDGET_overhead=20         # 2 variants x 5 functions x ~1 s + start-up
BUDGET_supernet=110        # batch 64 and 256 x 6 in-process modes x 18 steps of 20-150 ms (~50 s with builds);
                           # torch.compile in a child process: 45 s for both batches together
BUDGET_goldnas_memory=40   # 4 processes x (~5 s start-up + 6 steps of 0.24-0.43 s)
BUDGET_train=35            # 2 archs x 6 loops x 2 epochs of 2,560 images
BUDGET_search=55           # 2 epochs x 15 s (9,984 images at ~660 img/s) + ~15 s start-up and data loading
# Sum: 465 s, under the 480 s (8 minutes) of GPU_CHECK_BUDGET; with machine start and transfers the call
# fits one 600 s device command.
BUDGET_TOTAL=${GPU_CHECK_BUDGET:-480}
MIN_STEP=10                # a step with less than this left is skipped, not started

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-python3}

# One line on stdout: the environment as JSON, or why this machine cannot run the suite (exit 1).
preflight() {
  "$PY" - "$ROOT" <<'EOF'
import json, os, re, subprocess, sys
try:
    import torch
except Exception as exc:  # noqa: BLE001
    print(f"gpu_check: refused: torch is not importable by {sys.executable} ({type(exc).__name__}: {exc})")
    sys.exit(1)
if not torch.version.cuda:
    print(f"gpu_check: refused: torch {torch.__version__} is a CPU build (torch.version.cuda is None); "
          "the suite needs a CUDA build of torch >= 2.11")
    sys.exit(1)
if not torch.cuda.is_available():
    print(f"gpu_check: refused: no CUDA device (torch.cuda.is_available() is False, torch {torch.__version__}); "
          "run this on a machine with one CUDA GPU")
    sys.exit(1)
major, minor = (int(v) for v in re.match(r"(\d+)\.(\d+)", torch.__version__).groups())
if (major, minor) < (2, 11):
    print(f"gpu_check: refused: torch {torch.__version__} is older than 2.11")
    sys.exit(1)
commit = os.environ.get("GPU_CHECK_COMMIT", "")  # the device copy of a checkout may have no .git
if not commit:
    try:
        commit = subprocess.run(["git", "-C", sys.argv[1], "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
props = torch.cuda.get_device_properties(0)
print(json.dumps({"gpu": f"{props.name}, {props.total_memory / 2**30:.0f} GiB, {props.multi_processor_count} SMs",
                  "gpus": torch.cuda.device_count(), "torch": torch.__version__, "cuda": torch.version.cuda,
                  "python": sys.version.split()[0], "cores": os.cpu_count(), "commit": commit or "unknown"}))
EOF
}

# Appends one line to $WORK/steps.jsonl. record NAME STATUS RC SECONDS CAP NOTE
record() {
  local note=${6//[\"\\]/}
  printf '{"step": "%s", "status": "%s", "rc": %s, "seconds": %s, "cap": %s, "note": "%s"}\n' \
    "$1" "$2" "${3:-null}" "$4" "$5" "$note" >> "$WORK/steps.jsonl"
}

# Rewrites summary.md and results.json from what the steps left so far (so a killed run still has them).
report() {
  "$PY" "$ROOT/bench/gpu_report.py" --work "$WORK" --out "$OUT" "$@"
}

# run_step NAME CAP LOG CMD...: runs CMD under `timeout`, output appended to LOG, never more than what is
# left before the deadline; records passed / failed / timeout (or skipped when too little time is left).
# Returns CMD's exit status.
run_step() {
  local name=$1 cap=$2 log=$3
  shift 3
  local left=$(( DEADLINE - $(date +%s) ))
  if (( left < MIN_STEP )); then
    record "$name" skipped "" 0 "$cap" "only ${left} s left of the ${BUDGET_TOTAL} s budget"
    echo "[gpu_check] $name: skipped (only ${left} s left)"
    report --quiet
    return 0
  fi
  (( cap > left )) && cap=$left
  echo "=== $name (cap ${cap} s): $*" >> "$log"
  echo "[gpu_check] $name: running (cap ${cap} s)"
  local t0 t1 rc status note=""
  t0=$(date +%s%N)
  timeout -k 5 "$cap" "$@" >> "$log" 2>&1
  rc=$?
  t1=$(date +%s%N)
  case $rc in
    0) status=passed ;;
    124|137) status=timeout; note="stopped at its ${cap} s cap" ;;
    *) status=failed; note="exit ${rc}, see $(basename "$log")" ;;
  esac
  record "$name" "$status" "$rc" "$(( (t1 - t0) / 1000000 ))e-3" "$cap" "$note"
  echo "[gpu_check] $name: $status after $(( (t1 - t0) / 1000000000 )) s"
  report --quiet
  return $rc
}

# The extension, built in place against this torch (run under `timeout` through `bash -c`, hence exported).
build_extension() {
  CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) "$PY" -m pip install --no-build-isolation --no-deps -e . \
    -Cbuild-dir=/tmp/gpubuild || return 1
  "$PY" -c 'from goldnas_fast._library import cuda_version as v; print("cuda_version()", v()); raise SystemExit(v() <= 0)'
}

main() {
  if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: bash scripts/gpu_check.sh OUTDIR [DATA_NPZ]" >&2
    return 2
  fi
  local data=${2:-}
  if [ -n "$data" ] && [ ! -e "$data" ]; then
    echo "gpu_check: refused: DATA_NPZ $data does not exist" >&2
    return 2
  fi
  local meta
  if ! meta=$(preflight); then
    echo "${meta:-gpu_check: refused: $PY could not run}" >&2
    return 2
  fi
  [ -n "$data" ] && data=$(cd "$(dirname "$data")" && pwd)/$(basename "$data")
  mkdir -p "$1" || return 2
  OUT=$(cd "$1" && pwd)
  WORK=$(mktemp -d /tmp/gpu_check.XXXXXX)
  START=$(date +%s)
  DEADLINE=$(( START + BUDGET_TOTAL ))
  export PYTHONUNBUFFERED=1
  cd "$ROOT" || return 2
  rm -f "$OUT"/{summary.md,results.json,build.log,tests.log,bench.log}
  "$PY" -c 'import json, sys; m = json.loads(sys.argv[1]); m.update(started=sys.argv[2], budget_s=int(sys.argv[3])); print(json.dumps(m))' \
    "$meta" "$(date -u +%FT%TZ)" "$BUDGET_TOTAL" > "$WORK/meta.json"
  echo "[gpu_check] $(cat "$WORK/meta.json")"
  echo "[gpu_check] work folder $WORK, results in $OUT, budget ${BUDGET_TOTAL} s"
  local bench=$OUT/bench.log failed=0

  # (a) build in place against this torch; without CUDA kernels nothing else is worth running
  export PY
  export -f build_extension
  run_step build "$BUDGET_build" "$OUT/build.log" bash -c build_extension
  if [ $? -ne 0 ]; then
    tail -n 5 "$OUT/build.log" | sed 's/^/[gpu_check] build: /'
    echo "[gpu_check] the build failed or has no CUDA kernels (cuda_version() <= 0): stopping, see $OUT/build.log" >&2
    for s in tests mixed_sum node_sum overhead supernet goldnas_memory train search; do
      record "$s" skipped "" 0 0 "build failed"
    done
    report
    return 1
  fi
  "$PY" -c 'import json, sys; from goldnas_fast._library import cuda_version; p = sys.argv[1]; m = json.load(open(p)); m["cuda_version"] = cuda_version(); json.dump(m, open(p, "w"))' "$WORK/meta.json"

  # (b) CUDA tests, in parallel where pytest-xdist is there
  local par=() bm=()
  "$PY" -c "import xdist" 2>/dev/null && par=(-n 6)
  "$PY" -c "import pytest_benchmark" 2>/dev/null && bm=(--benchmark-disable)
  run_step tests "$BUDGET_tests" "$OUT/tests.log" \
    "$PY" -m pytest -q -rf -p no:cacheprovider ${bm[@]+"${bm[@]}"} ${par[@]+"${par[@]}"} -k "cuda or graphed" tests \
    || failed=1

  # (c) every benchmark in GPU mode, each writing its JSON into the work folder
  run_step mixed_sum "$BUDGET_mixed_sum" "$bench" \
    "$PY" bench/bench_mixed_sum.py --device cuda --quick --big --json "$WORK/mixed_sum.json" || failed=1
  run_step node_sum "$BUDGET_node_sum" "$bench" \
    "$PY" bench/bench_node_sum.py --device cuda --quick --json "$WORK/node_sum.json" || failed=1
  run_step overhead "$BUDGET_overhead" "$bench" \
    "$PY" bench/bench_overhead.py --device cuda --quick --json "$WORK/overhead.json" || failed=1
  if ! "$PY" -c "import xautodl" 2>/dev/null; then
    local whl
    whl=$(ls "$ROOT"/.whl/xautodl-*.whl 2>/dev/null | head -n 1)
    if [ -n "$whl" ] && "$PY" -m pip install -q --no-deps --no-index --target "$WORK/site" "$whl" >> "$bench" 2>&1; then
      export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
    else
      echo "[gpu_check] xautodl is not importable and no .whl/xautodl-*.whl: the AutoDL rows will say so"
    fi
  fi
  run_step supernet "$BUDGET_supernet" "$bench" \
    "$PY" bench/bench_supernet.py --device cuda --batch 64 256 --fractions 1 --gate softmax --steps 15 --warmup 2 \
    --modes reference fused fused+graph fused@cl fused+graph@cl autodl compile \
    --compile-cap 45 --compile-total 45 --mode-cap 5 --json "$WORK/supernet.json" || failed=1
  run_step goldnas_memory "$BUDGET_goldnas_memory" "$bench" \
    "$PY" bench/bench_goldnas_memory.py --device cuda --steps 5 --child-timeout 25 \
    --json "$WORK/goldnas_memory.json" || failed=1
  run_step train "$BUDGET_train" "$bench" \
    "$PY" bench/bench_train.py --device cuda --images 2560 ${data:+--data "$data"} --json "$WORK/train.json" || failed=1
  if [ -n "$data" ]; then
    # the search stops itself 8 s before the step's cap, so that its JSON (with the epochs done) is written
    local search_cap=$(( DEADLINE - $(date +%s) ))
    (( search_cap > BUDGET_search )) && search_cap=$BUDGET_search
    run_step search "$BUDGET_search" "$bench" \
      "$PY" bench/bench_search.py --device cuda --data "$data" --epochs 2 --timeout $(( search_cap - 8 )) \
      --json "$WORK/search.json" || failed=1
  else
    record search skipped "" 0 "$BUDGET_search" "no DATA_NPZ given"
  fi

  # (f) the summary, last
  echo "[gpu_check] done in $(( $(date +%s) - START )) s; files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
  report
  return $failed
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
  exit $?
fi
