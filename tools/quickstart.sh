#!/usr/bin/env bash
# The embedded default end to end on a fresh machine: install, generate the shapes dataset,
# train the small detector of cfgs/shapes.yml, score it (VOC mAP) and draw detections.
# Arguments go to tools/trainval_net.py, e.g. `bash tools/quickstart.sh --seed 2`.
# Prints the time of each phase and the test mAP table at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

phase_names=()
phase_seconds=()
run_phase() {
  local name=$1
  shift
  local start=$SECONDS
  echo "== ${name}"
  "$@"
  phase_names+=("$name")
  phase_seconds+=($((SECONDS - start)))
}

install() {
  python3 -m pip install --quiet -r requirements.txt
  python3 -m pip install --quiet --no-build-isolation -e .
}

dataset() {
  python3 -c "from fasterrcnn.config import load_config; from fasterrcnn.data import get_imdb; \
cfg = load_config('cfgs/shapes.yml'); [get_imdb(n, cfg.DATA_DIR, cfg) for n in ('shapes_train', 'shapes_test')]"
}

demo() {
  mkdir -p output/demo_images
  head -n 12 data/shapes/ImageSets/Main/test.txt | while read -r image_id; do
    cp "data/shapes/JPEGImages/${image_id}.jpg" output/demo_images/
  done
  python3 tools/demo.py --image_dir output/demo_images --checkpoint_path "$checkpoint" \
    --output_dir output/demo
}

run_phase install install
run_phase dataset dataset
run_phase train python3 tools/trainval_net.py --dataset shapes --save_dir models --quiet "$@"
checkpoint=$(ls -t models/res18/shapes/faster_rcnn_1_*.pth | head -n 1)
run_phase test python3 tools/test_net.py --dataset shapes --checkpoint_path "$checkpoint" \
  --output_dir output --vis --quiet
run_phase demo demo

echo
echo "| phase | time |"
echo "|---|---:|"
total=0
for i in "${!phase_names[@]}"; do
  seconds=${phase_seconds[$i]}
  total=$((total + seconds))
  printf '| %s | %d min %02d s |\n' "${phase_names[$i]}" $((seconds / 60)) $((seconds % 60))
done
printf '| **total** | %d min %02d s |\n' $((total / 60)) $((total % 60))
echo
python3 - <<'PY'
import json

from fasterrcnn.eval.voc import format_ap_table

with open("output/shapes_test/results.json", encoding="utf-8") as handle:
    results = json.load(handle)
print(format_ap_table(results, ["__background__", *results["ap"]]))
print(f"(VOC2007 11-point AP; as the area under the precision envelope: mAP {100 * results['map_area']:.2f})")
PY
echo
echo "checkpoint: ${checkpoint}; drawn test images: output/shapes_test/vis and output/demo"
