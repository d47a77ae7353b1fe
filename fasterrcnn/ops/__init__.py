"""Detection ops: NMS and RoI pooling (pool / align / crop).

Signatures and numerics of nms, batched_nms, roi_pool and roi_align follow torchvision.ops;
roi_crop is faster-rcnn.pytorch's "crop" pooling.  Compiled kernels (``fasterrcnn._C``, CPU and
CUDA) are used when built; otherwise, or with ``FASTERRCNN_OPS=torch``, vectorised pure-torch
fallbacks.  ``backend(device)`` tells which one runs.
"""
from ._ext import backend
from .nms import batched_nms, nms
from .roi_align import RoIAlign, roi_align
from .roi_crop import RoICrop, roi_crop
from .roi_pool import RoIPool, roi_pool

__all__ = [
    "RoIAlign", "RoICrop", "RoIPool", "backend", "batched_nms", "nms", "roi_align", "roi_crop",
    "roi_pool",
]
