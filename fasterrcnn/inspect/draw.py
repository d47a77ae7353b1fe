"""Matplotlib drawings of a :class:`~fasterrcnn.inspect.Trace`.

Each function returns a ``matplotlib.figure.Figure`` (made without pyplot, so nothing global is
touched; a notebook displays it, ``fig.savefig(path)`` writes it) or draws into a given ``ax``.
Anchors, proposals and RoIs are drawn on the network's input image (``trace.input_image``, the
resized image whose pixels they are in); detections on the original image.  Boxes use the +1
convention: a box covers pixels ``x1 .. x2``, drawn from ``x1 - 0.5`` to ``x2 + 0.5``.
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from fasterrcnn.inspect.trace import Trace
from fasterrcnn.vis import class_color

_FIGSIZE = (8.0, 6.0)
_POSITIVE, _NEGATIVE, _GT, _BACKGROUND = "#1a9850", "#d73027", "#fee08b", "white"


def _axes(ax: Optional[Axes], title: str) -> Tuple[Figure, Axes]:
    if ax is None:
        fig = Figure(figsize=_FIGSIZE, layout="constrained")
        ax = fig.add_subplot()
    ax.set_title(title, fontsize=10)
    ax.set_axis_off()
    return ax.figure, ax


def _show(ax: Axes, bgr: np.ndarray) -> None:
    ax.imshow(bgr[:, :, ::-1], interpolation="nearest")


def _box(
    ax: Axes, box: Sequence[float], color, width: float = 1.5, alpha: float = 1.0, style: str = "-"
) -> None:
    x1, y1, x2, y2 = (float(v) for v in box)
    ax.add_patch(
        Rectangle(
            (x1 - 0.5, y1 - 0.5),
            x2 - x1 + 1,
            y2 - y1 + 1,
            fill=False,
            edgecolor=color,
            linewidth=width,
            alpha=alpha,
            linestyle=style,
        )
    )


def _rgb(label: int) -> Tuple[float, float, float]:
    b, g, r = class_color(label)
    return r / 255.0, g / 255.0, b / 255.0


def _name(label: int, class_names: Optional[Sequence[str]]) -> str:
    if class_names is not None and 0 <= label < len(class_names):
        return str(class_names[label])
    return str(label)


def _gt_in_input(trace: Trace) -> Optional[np.ndarray]:
    """The targets' boxes ``(G, 4)`` in input-image pixels, or None without targets."""
    if trace.targets is None:
        return None
    boxes = torch.as_tensor(trace.targets["boxes"]).detach().cpu().double().numpy()
    return boxes.reshape(-1, 4) * trace.scale


def _draw_gt(ax: Axes, trace: Trace) -> None:
    gt = _gt_in_input(trace)
    for box in [] if gt is None else gt:
        _box(ax, box, _GT, width=2.0, style="--")


def center_cell(trace: Trace) -> Tuple[int, int]:
    """``(y, x)`` of the feature cell at the centre of the feature map."""
    height, width = trace.feature_size
    return height // 2, width // 2


def cell_anchors(trace: Trace, cell: Optional[Tuple[int, int]] = None) -> torch.Tensor:
    """The ``A`` anchors ``(A, 4)`` of feature cell ``(y, x)`` (default: the centre cell)."""
    y, x = center_cell(trace) if cell is None else cell
    height, width = trace.feature_size
    if not (0 <= y < height and 0 <= x < width):
        raise ValueError(f"cell {(y, x)} is outside the {height}x{width} feature map")
    first = (y * width + x) * trace.num_anchors
    return trace["anchors"][first : first + trace.num_anchors]


def draw_cell_anchors(
    trace: Trace, cell: Optional[Tuple[int, int]] = None, ax: Optional[Axes] = None
) -> Figure:
    """The ``A`` anchors (9 by default: 3 scales x 3 ratios) of one feature cell."""
    y, x = center_cell(trace) if cell is None else cell
    anchors = cell_anchors(trace, (y, x))
    fig, ax = _axes(ax, f"the {len(anchors)} anchors of feature cell (y={y}, x={x})")
    _show(ax, trace.input_image)
    for a, box in enumerate(anchors.tolist()):
        _box(ax, box, _rgb(a + 1), width=1.5)
    stride = trace.feat_stride
    ax.add_patch(
        Rectangle((x * stride - 0.5, y * stride - 0.5), stride, stride, color="white", alpha=0.8)
    )
    lo, hi = anchors[:, :2].min(0).values - 8, anchors[:, 2:].max(0).values + 8
    height, width = trace.input_image.shape[:2]
    ax.set_xlim(min(float(lo[0]), -0.5), max(float(hi[0]), width - 0.5))
    ax.set_ylim(max(float(hi[1]), height - 0.5), min(float(lo[1]), -0.5))
    return fig


def draw_anchor_labels(trace: Trace, ax: Optional[Axes] = None) -> Figure:
    """The sampled RPN minibatch: positive anchors (green), negative (red, thin); the others are
    ignored (counted in the title); ground truth dashed yellow.  Needs a trace with targets."""
    labels = trace["rpn_labels"][0]
    anchors = trace["anchors"]
    pos, neg = anchors[labels == 1], anchors[labels == 0]
    ignored = int((labels == -1).sum())
    fig, ax = _axes(
        ax,
        f"RPN anchors: {len(pos)} positive (green), {len(neg)} negative (red), {ignored} ignored",
    )
    _show(ax, trace.input_image)
    for box in neg.tolist():
        _box(ax, box, _NEGATIVE, width=0.6, alpha=0.5)
    for box in pos.tolist():
        _box(ax, box, _POSITIVE, width=1.5)
    _draw_gt(ax, trace)
    return fig


def draw_proposals(trace: Trace, top_k: int = 20, ax: Optional[Axes] = None) -> Figure:
    """The ``top_k`` best proposals (RPN output after NMS), with their fg scores."""
    count = trace.num_rois
    rois, scores = trace["rois"][0, :count], trace["rois_scores"][0, :count]
    order = torch.argsort(scores, descending=True, stable=True)[:top_k]
    fig, ax = _axes(ax, f"top {len(order)} of {count} proposals (fg score)")
    _show(ax, trace.input_image)
    for rank, i in enumerate(order.tolist()):
        color = _rgb(rank + 1)
        box = rois[i, 1:].tolist()
        _box(ax, box, color, width=1.5)
        ax.text(
            box[0],
            box[1],
            f"{float(scores[i]):.2f}",
            color="white",
            fontsize=7,
            va="bottom",
            bbox={"facecolor": color, "pad": 1, "linewidth": 0},
        )
    return fig


def draw_sampled_rois(
    trace: Trace, class_names: Optional[Sequence[str]] = None, ax: Optional[Axes] = None
) -> Figure:
    """The RoIs sampled for the second stage: foreground coloured by class, background grey;
    ground truth dashed yellow.  Needs a trace with targets."""
    rois, labels = trace["sampled_rois"][0], trace["rois_label"][0].long()
    fg = labels > 0
    fig, ax = _axes(
        ax,
        f"sampled RoIs: {int(fg.sum())} foreground (by class), "
        f"{int((~fg).sum())} background (white)",
    )
    _show(ax, trace.input_image)
    for box in rois[~fg, 1:].tolist():
        _box(ax, box, _BACKGROUND, width=0.8, alpha=0.8)
    for box, label in zip(rois[fg, 1:].tolist(), labels[fg].tolist()):
        _box(ax, box, _rgb(label), width=1.5)
    for label in sorted(set(labels[fg].tolist())):
        ax.plot([], [], color=_rgb(label), label=_name(label, class_names))
    if bool(fg.any()):
        ax.legend(loc="upper right", fontsize=7)
    _draw_gt(ax, trace)
    return fig


def draw_detections(
    trace: Trace,
    class_names: Optional[Sequence[str]] = None,
    score_thresh: float = 0.0,
    ax: Optional[Axes] = None,
) -> Figure:
    """The final detections above ``score_thresh`` on the original image."""
    det = trace.detections
    keep = det["scores"] > score_thresh
    fig, ax = _axes(ax, f"{int(keep.sum())} detections (score > {score_thresh:g})")
    _show(ax, trace.image)
    for box, score, label in zip(
        det["boxes"][keep].tolist(), det["scores"][keep].tolist(), det["labels"][keep].tolist()
    ):
        color = _rgb(label)
        _box(ax, box, color, width=2.0)
        ax.text(
            box[0],
            box[1],
            f"{_name(label, class_names)} {score:.2f}",
            color="white",
            fontsize=7,
            va="bottom",
            bbox={"facecolor": color, "pad": 1, "linewidth": 0},
        )
    return fig


def draw_all(
    trace: Trace,
    class_names: Optional[Sequence[str]] = None,
    top_k: int = 20,
    score_thresh: float = 0.0,
) -> Dict[str, Figure]:
    """Every drawing that the trace supports, by file stem (target drawings need targets)."""
    figures = {"1_anchors_of_one_cell": draw_cell_anchors(trace)}
    if "rpn_labels" in trace:
        figures["2_anchor_labels"] = draw_anchor_labels(trace)
    figures["3_proposals"] = draw_proposals(trace, top_k)
    if "sampled_rois" in trace:
        figures["4_sampled_rois"] = draw_sampled_rois(trace, class_names)
    figures["5_detections"] = draw_detections(trace, class_names, score_thresh)
    return figures


def save_all(
    trace: Trace,
    out_dir: str,
    class_names: Optional[Sequence[str]] = None,
    top_k: int = 20,
    score_thresh: float = 0.0,
) -> List[str]:
    """Write :func:`draw_all`'s figures as PNG files and ``shapes.txt`` into ``out_dir``;
    returns the paths written."""
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for stem, fig in draw_all(trace, class_names, top_k, score_thresh).items():
        path = os.path.join(out_dir, f"{stem}.png")
        fig.savefig(path, dpi=100)
        paths.append(path)
    table = os.path.join(out_dir, "shapes.txt")
    with open(table, "w", encoding="utf-8") as handle:
        handle.write(trace.format_shapes() + "\n")
    paths.append(table)
    return paths
