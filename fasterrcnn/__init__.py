"""fasterrcnn: Faster R-CNN in PyTorch, laid out like faster-rcnn.pytorch.

import fasterrcnn
cfg = fasterrcnn.load_config("res101", ["TRAIN.SCALES", "[800]"])   # or a YAML path
model = fasterrcnn.build_model(cfg, num_classes=21)
det = fasterrcnn.Detector.from_checkpoint("models/res18/shapes/faster_rcnn_1_1_1300.pth")
"""

from fasterrcnn import _threads  # noqa: F401  (first: sets the OpenMP spin before torch loads)
from fasterrcnn._version import __version__
from fasterrcnn.config import Config, load_config
from fasterrcnn.detector import Detector
from fasterrcnn.model import build_model

__all__ = ["Config", "Detector", "__version__", "build_model", "load_config"]
