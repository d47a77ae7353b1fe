"""Pure-torch implementations of the ops (used when the extension is missing or disabled).

The functions here are differentiable torch code; ``fasterrcnn/ops/_library.py`` registers them
(with their explicit backward functions) as the ``torch.ops.fasterrcnn_torch`` operators.
"""

from ._batching import check_batch_indices
from .nms import nms, nms_mask
from .roi_align import roi_align, roi_align_backward
from .roi_crop import roi_crop, roi_crop_backward, roi_crop_with_argmax
from .roi_pool import roi_pool, roi_pool_backward, roi_pool_with_argmax

__all__ = [
    "check_batch_indices",
    "nms",
    "nms_mask",
    "roi_align",
    "roi_align_backward",
    "roi_crop",
    "roi_crop_backward",
    "roi_crop_with_argmax",
    "roi_pool",
    "roi_pool_backward",
    "roi_pool_with_argmax",
]
