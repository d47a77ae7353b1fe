"""Helpers for trainer tests: a stand-in detector and a counter of host synchronisations."""

from __future__ import annotations

from typing import Dict, List, Optional

import torch
from torch import nn

from fasterrcnn.config import load_config

LOSSES = ("rpn_cls", "rpn_box", "rcnn_cls", "rcnn_box")

HOST_READS = (
    "item",
    "tolist",
    "cpu",
    "numpy",
    "__bool__",
    "__float__",
    "__int__",
    "__index__",
    "nonzero",
)
"""Tensor methods that read device memory back to the host (a synchronisation on CUDA)."""


class StubDetector(nn.Module):
    """Stands in for FasterRCNN in trainer tests: the four losses of the reference, computed
    from the image and four weights without reading anything back to the host.

    ``poison_at``: the 1-based forward call whose ``rcnn_box`` loss is NaN.
    """

    def __init__(self, poison_at: Optional[int] = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.linspace(0.5, 2.0, len(LOSSES)))
        self.register_buffer("seen", torch.zeros(()))
        self.generator = torch.Generator().manual_seed(0)
        self.poison_at = poison_at
        self.calls = 0

    def forward(self, im_data, im_info, gt_boxes, num_boxes) -> Dict[str, torch.Tensor]:
        self.calls += 1
        self.seen += 1
        values = (self.weight * im_data.float().mean() - 1.0) ** 2
        if self.calls == self.poison_at:
            values = values * torch.tensor([1.0, 1.0, 1.0, float("nan")], device=values.device)
        return dict(zip(LOSSES, values.unbind()))


def stub_batches(count: int, device: torch.device = torch.device("cpu")) -> List[tuple]:
    """``count`` loader batches ``(im_data (2,3,8,8), im_info, gt_boxes, num_boxes, ids)``."""
    gen = torch.Generator().manual_seed(3)
    return [
        (
            torch.rand(2, 3, 8, 8, generator=gen).to(device),
            torch.ones(2, 3, device=device),
            torch.zeros(2, 5, 5, device=device),
            torch.ones(2, dtype=torch.long, device=device),
            [f"img{i}a.jpg", f"img{i}b.jpg"],
        )
        for i in range(count)
    ]


def stub_cfg(*overrides):
    """The default config with a short schedule: one epoch, no warm-up."""
    return load_config(None, ["TRAIN.WARMUP_ITERS", 0, "TRAIN.EPOCHS", 1] + list(overrides))


class HostReadCounter:
    """Counts calls of :data:`HOST_READS` on tensors while installed (``monkeypatch``)."""

    def __init__(self, monkeypatch) -> None:
        self.calls: List[str] = []
        for name in HOST_READS:
            original = getattr(torch.Tensor, name)
            monkeypatch.setattr(torch.Tensor, name, self._counting(name, original))

    def _counting(self, name, original):
        def method(tensor, *args, **kwargs):
            self.calls.append(name)
            return original(tensor, *args, **kwargs)

        return method

    def reset(self) -> None:
        self.calls.clear()
