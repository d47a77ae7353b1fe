"""fasterrcnn: Faster R-CNN in PyTorch, laid out like faster-rcnn.pytorch."""

from fasterrcnn.config import Config, load_config

__all__ = ["Config", "load_config"]
__version__ = "0.1.0"
