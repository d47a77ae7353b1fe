"""Detection ops: NMS and RoI pooling (pool / align / crop), as PyTorch operators.

Signatures and numerics of nms, batched_nms, roi_pool and roi_align follow torchvision.ops;
roi_crop is faster-rcnn.pytorch's "crop" pooling; nms_mask / batched_nms_mask are the fixed-size
(keep mask) forms of NMS.  The functions call the dispatcher operators ``torch.ops.fasterrcnn.*``
(compiled CPU / CUDA kernels of ``fasterrcnn._C``) when the extension is built and handles the
tensors, otherwise, or with ``FASTERRCNN_OPS=torch``, ``torch.ops.fasterrcnn_torch.*`` (the
vectorised pure-torch fallbacks).  Both have fake kernels, autograd and autocast registered, so
they run under FakeTensor, ``torch.compile`` and ``torch.export``.  ``backend(device)`` tells
which one runs.
"""

from . import _library  # noqa: F401  (registers the operators' fake, autograd, autocast kernels)
from ._ext import backend
from .nms import batched_nms, batched_nms_mask, nms, nms_mask
from .roi_align import RoIAlign, roi_align
from .roi_crop import RoICrop, roi_crop
from .roi_pool import RoIPool, roi_pool

__all__ = [
    "RoIAlign",
    "RoICrop",
    "RoIPool",
    "backend",
    "batched_nms",
    "batched_nms_mask",
    "nms",
    "nms_mask",
    "roi_align",
    "roi_crop",
    "roi_pool",
]
