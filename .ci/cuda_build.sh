#!/usr/bin/env bash
# Builds the whole extension, .cu files included, against the CUDA build of torch 2.14.1 (cu130) on a
# machine without a GPU (../shared/docs/cuda-build.md), then checks that every goldnas op has a CUDA
# kernel registered and runs the CPU test suite with that torch. Usage: .ci/cuda_build.sh VENV_DIR
set -euo pipefail
V=${1:?usage: cuda_build.sh VENV_DIR}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if ! command -v nvcc >/dev/null; then
  echo "cuda_build: nvcc not found; skipping the CUDA build check" >&2
  exit 0
fi
[ -x "$V/bin/python" ] || python3 -m venv "$V"
"$V/bin/pip" install -q torch==2.14.1 numpy scikit-build-core pybind11 ninja "cmake>=3.28" pytest tqdm matplotlib
NV=$("$V/bin/python" -c "import nvidia, os; print(os.path.join(nvidia.__path__[0], 'cu13'))")
# The toolkit root that the nvcc on PATH belongs to (nvcc may be a wrapper script).
CUDA_HOME=$(echo '' > "$V/x.cu"; nvcc --dryrun -c "$V/x.cu" -o /dev/null 2>&1 | sed -n 's/^#\$ TOP=//p' | head -1)
export CUDA_HOME CUDACXX="$CUDA_HOME/bin/nvcc" TORCH_CUDA_ARCH_LIST="9.0" CPATH="$NV/include"
cd "$ROOT"
"$V/bin/pip" install -q --no-build-isolation . \
  -Cbuild-dir="$V/build" \
  -Ccmake.define.GOLDNAS_WITH_CUDA=ON \
  -Ccmake.define.CUDA_TOOLKIT_ROOT_DIR="$CUDA_HOME" \
  -Ccmake.define.CUDA_nvrtc_LIBRARY="$NV/lib/libnvrtc.so.13"
cd "$V"  # import the installed copy, not the source tree
"$V/bin/python" - <<'PY'
import torch
import goldnas_fast._library as lib

ops = sorted(n.split("::", 1)[1] for n in torch._C._dispatch_get_all_op_names() if n.startswith("goldnas::"))
assert ops, "no goldnas ops registered"
assert lib.cuda_version() > 0, "extension built without CUDA kernels"
# ops named _* report build information (no tensors, no dispatch key) or are test-only CPU ops
# (_node_sum_emulate_cuda runs the CUDA kernels' element functions on the host)
missing = [n for n in ops if not n.startswith("_") and "\nCUDA:" not in torch._C._dispatch_dump(f"goldnas::{n}")]
print(f"cuda_build: torch {torch.__version__}, CUDA runtime {lib.cuda_version()}, ops {sorted(ops)}")
assert not missing, f"ops without a CUDA kernel: {missing}"
print("cuda_build: every goldnas op has a CUDA kernel registered")
PY
