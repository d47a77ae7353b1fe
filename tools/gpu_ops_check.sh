#!/usr/bin/env bash
# GPU checks of the ops, as one script for a short session on a CUDA machine: build the CUDA
# kernels, run the ops tests on the device (opcheck of both namespaces, nms / nms_mask against
# torchvision), then time the ops against torchvision.ops (NMS at 6000 / 12000 / 30000 boxes,
# RoI ops forward+backward).  Usage: bash tools/gpu_ops_check.sh [REPEATS]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${ROOT}"
REPEATS="${1:-20}"
BUILD_LOG="$(mktemp)"

FORCE_CUDA=1 python3 setup.py build_ext --inplace > "${BUILD_LOG}" 2>&1 || {
  tail -40 "${BUILD_LOG}" >&2
  exit 1
}
python3 -c "import fasterrcnn.ops as o, torch; assert o.backend('cuda') == 'cuda', o.backend('cuda')"
python3 -m pytest tests/test_ops_library.py tests/test_ops_nms.py -q -m cuda
PYTHONPATH="${ROOT}" python3 tools/bench_ops.py --device cuda --repeats "${REPEATS}" \
  --boxes 6000 12000 30000
