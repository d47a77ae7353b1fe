#!/usr/bin/env bash
# Build the wheel, install it into a fresh virtual environment and use it from a folder outside
# the repository, as a new user would: every source file and config must be in the wheel, every
# subpackage must import, the compiled kernels must load, and a tiny train -> test -> demo must
# run through the console entry points.  Any failure exits non-zero.
#
#   bash .ci/wheel_smoke.sh              build the wheel from this checkout, then test it
#   bash .ci/wheel_smoke.sh WHEEL        test an already built wheel
# torch and the other dependencies come from the system: the venv sees its site-packages.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/fasterrcnn-wheel.XXXXXX")
trap 'rm -rf "$work"' EXIT
unset PYTHONPATH

if [ $# -ge 1 ]; then
  wheel=$(realpath "$1")
else
  echo "== build the wheel"
  python3 -m pip wheel --quiet --no-build-isolation --no-deps --wheel-dir "$work/dist" "$repo"
  wheel=$(ls "$work"/dist/fasterrcnn-*.whl)
fi
echo "$wheel"

echo "== every package file of the checkout is in the wheel"
python3 "$repo/.ci/check_wheel_contents.py" "$repo" "$wheel"

echo "== install it into a fresh venv; its declared dependencies must be satisfied (pip check)"
python3 -m venv --system-site-packages "$work/venv"
py="$work/venv/bin/python"
# the venv's own old setuptools would hide the system's (torch needs setuptools >= 77)
"$py" -m pip uninstall --quiet --yes setuptools
# --force-reinstall: an editable install in the system site-packages must not stand in for it
"$py" -m pip install --quiet --no-index --force-reinstall --no-deps "$wheel"
"$py" -m pip check

mkdir "$work/run"
cd "$work/run"
echo "== imports from $PWD"
"$py" - "$repo" "$work/venv" <<'PY'
import importlib
import os
import pkgutil
import sys

repo, venv = (os.path.realpath(p) for p in sys.argv[1:3])
import fasterrcnn
from fasterrcnn import ops

where = os.path.realpath(fasterrcnn.__file__)
assert where.startswith(venv + os.sep), f"fasterrcnn imported from {where}, not from {venv}"
assert not where.startswith(repo + os.sep), f"fasterrcnn imported from the checkout: {where}"
names = [m.name for m in pkgutil.walk_packages(fasterrcnn.__path__, "fasterrcnn.")]
for name in names:
    importlib.import_module(name)
assert ops.backend("cpu") == "cpp", f"ops backend on the CPU: {ops.backend('cpu')}"
configs = fasterrcnn.config.packaged_config_names()
assert {"shapes", "res101", "res101_ls", "res50", "vgg16"} <= set(configs), configs
assert fasterrcnn.load_config("res101_ls").NET == "res101"  # _BASE_ inside the wheel
print(f"fasterrcnn {fasterrcnn.__version__} from {where}: {len(names)} modules imported, "
      f"ops backend cpp, configs {configs}")
PY

echo "== an unknown --cfg name lists the packaged configs"
if "$work/venv/bin/fasterrcnn-train" --cfg no_such_config --max_iters 1 2> unknown.log; then
  echo "fasterrcnn-train accepted --cfg no_such_config" >&2
  exit 1
fi
grep -q "no_such_config" unknown.log && grep -q "shapes" unknown.log

echo "== tiny train -> test -> demo through the entry points"
tiny=(DATA_DIR data DATASET.SHAPES_NUM_TRAIN 12 DATASET.SHAPES_NUM_TEST 6
      BACKBONE.WIDTH_MULT 0.25 RPN_CHANNELS 32 ANCHOR_SCALES "[1, 2, 4]"
      TRAIN.SCALES "[128]" TRAIN.MAX_SIZE 200 TEST.SCALES "[128]" TEST.MAX_SIZE 200
      TRAIN.BATCH_SIZE 16 TRAIN.RPN_BATCHSIZE 64 TRAIN.RPN_PRE_NMS_TOP_N 300
      TRAIN.RPN_POST_NMS_TOP_N 50 TEST.RPN_PRE_NMS_TOP_N 300 TEST.RPN_POST_NMS_TOP_N 30
      TRAIN.WARMUP_ITERS 0)
"$work/venv/bin/fasterrcnn-train" --dataset shapes --cfg shapes --bs 2 --max_iters 4 \
  --device cpu --quiet --save_dir models --set "${tiny[@]}"
checkpoint=$(ls -t models/res18/shapes/faster_rcnn_1_*.pth | head -n 1)
"$work/venv/bin/fasterrcnn-test" --checkpoint_path "$checkpoint" --output_dir output --device cpu \
  --quiet --vis
"$py" -c "import json; r = json.load(open('output/shapes_test/results.json')); \
assert 0.0 <= r['map'] <= 1.0 and len(r['ap']) == 5, r"
test -f output/shapes_test/detections.npz
test "$(ls output/shapes_test/vis | wc -l)" -eq 6
mkdir images
cp data/shapes/JPEGImages/$(head -n 1 data/shapes/ImageSets/Main/test.txt).jpg images/
"$work/venv/bin/fasterrcnn-demo" --image_dir images --checkpoint_path "$checkpoint" \
  --output_dir demo --device cpu
test "$(ls demo/*_det.jpg | wc -l)" -eq 1 && test "$(ls demo/*.json | wc -l)" -eq 1
"$work/venv/bin/fasterrcnn-data" check --dataset shapes --cfg shapes --out data_check \
  --set "${tiny[@]}" > data_check.log
grep -q "Anchor fit" data_check.log
"$work/venv/bin/fasterrcnn-export" --checkpoint "$checkpoint" --format pt2 --output model.pt2 \
  --device cpu
test -s model.pt2
echo "wheel smoke test passed: $(basename "$wheel")"
