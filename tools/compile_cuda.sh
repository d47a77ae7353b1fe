#!/usr/bin/env bash
# Compile every csrc/cuda/*.cu to an object file with plain nvcc (no torch headers needed), for
# sm_80 and sm_90, into a temporary directory.  Exits non-zero when any file fails.
# Usage: tools/compile_cuda.sh   (NVCC=/path/to/nvcc to pick the compiler)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NVCC="${NVCC:-nvcc}"
OUT_DIR="$(mktemp -d)"
trap 'rm -rf "${OUT_DIR}"' EXIT

status=0
for source in "${ROOT}"/csrc/cuda/*.cu; do
  name="$(basename "${source}" .cu)"
  if "${NVCC}" -c "${source}" -o "${OUT_DIR}/${name}.o" -O3 -std=c++17 \
      --expt-relaxed-constexpr -I "${ROOT}/csrc/include" \
      -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90; then
    echo "ok      ${source#"${ROOT}"/}"
  else
    echo "FAILED  ${source#"${ROOT}"/}" >&2
    status=1
  fi
done
exit "${status}"
