#!/usr/bin/env bash
# Set-up on a fresh machine: a virtual environment with torch (CPU build 2.13.0 unless a torch is already
# there), the build tools, and goldnas_fast built from this tree against that torch.
# Usage: bash scripts/setup.sh            (venv in .venv; VENV=path to choose another)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
PY=${PYTHON:-python3}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
$PIP install -q --upgrade pip
# torch is the user's own: install one only where none is importable, and never upgrade it.
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  $PIP install -q "torch==${TORCH_VERSION:-2.13.0}"
fi
$PIP install -q numpy tqdm matplotlib scikit-build-core pybind11 ninja "cmake>=3.28" pytest pytest-benchmark
# --no-build-isolation: build against the torch installed above instead of a freshly downloaded one.
$PIP install -q --no-build-isolation -e "$ROOT"
"$VENV/bin/python" -c "import torch, goldnas_fast._library as l; print(f'goldnas_fast ready: torch {torch.__version__}, CUDA kernels: {l.cuda_version() > 0}')"
