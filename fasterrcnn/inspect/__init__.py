"""See every stage of the model: ``trace(model, image, targets=None)`` records them, ``.shapes()``
prints the walkthroughs' table, :mod:`fasterrcnn.inspect.draw` draws anchors, proposals, RoIs
and detections, and ``python -m fasterrcnn.inspect`` writes it all for one image."""

from fasterrcnn.inspect.trace import STAGES, TARGET_STAGES, Trace, trace

__all__ = ["STAGES", "TARGET_STAGES", "Trace", "trace"]
