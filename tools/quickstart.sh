#!/usr/bin/env bash
# The embedded default end to end on a fresh machine: install, generate the shapes dataset,
# train the small detector of cfgs/shapes.yml, score it (VOC mAP) and draw detections.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet -r requirements.txt
python3 -m pip install --quiet --no-build-isolation -e .

python3 tools/trainval_net.py --dataset shapes --save_dir models "$@"
checkpoint=$(ls -t models/res18/shapes/faster_rcnn_1_*.pth | head -n 1)

python3 tools/test_net.py --dataset shapes --checkpoint_path "$checkpoint" --output_dir output --vis

mkdir -p output/demo_images
head -n 12 data/shapes/ImageSets/Main/test.txt | while read -r image_id; do
  cp "data/shapes/JPEGImages/${image_id}.jpg" output/demo_images/
done
python3 tools/demo.py --image_dir output/demo_images --checkpoint_path "$checkpoint" \
  --output_dir output/demo
echo "mAP table: output/shapes_test/results.json; drawn test images: output/shapes_test/vis and output/demo"
