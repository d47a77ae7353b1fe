"""Pure-torch implementations of the ops (used when the extension is missing or disabled)."""
from .nms import nms
from .roi_align import roi_align
from .roi_crop import roi_crop
from .roi_pool import roi_pool

__all__ = ["nms", "roi_align", "roi_crop", "roi_pool"]
