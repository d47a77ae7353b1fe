"""Reading and writing PASCAL VOC annotation XML.

VOC XML coordinates are 1-based pixel indices (``xmin`` is the first covered column); they
become 0-based by subtracting 1, keeping the +1 convention (width = x2 - x1 + 1).  Float
coordinates are accepted.  The repair rules for bad boxes are in :mod:`.validate`.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from fasterrcnn.data.validate import IssueLog, clean_boxes

_COORDS = ("xmin", "ymin", "xmax", "ymax")


def parse_voc_xml(
    path: str, class_to_index: Mapping[str, int], issues: IssueLog
) -> Optional[Dict[str, object]]:
    """Parse one annotation file.

    Objects with an unknown class name, a missing or non-numeric coordinate, or a box that the
    rules of :mod:`.validate` reject are skipped with a warning naming the file and the box.

    Args:
        path: the XML file.
        class_to_index: class name -> label (1..K); names are matched after stripping blanks,
            then case-insensitively.
        issues: where warnings go.

    Returns:
        None when the file is missing or is not well-formed XML (a warning is logged), else
        dict(width, height (0 when the file gives no valid size), boxes (M,4) float32 0-based
        +1 convention, gt_classes (M,) int64, difficult (M,) bool).
    """
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError:
        issues.warn(f"{path}: annotation file is missing: image has no boxes")
        return None
    except (ET.ParseError, OSError) as err:
        issues.warn(f"{path}: malformed annotation XML ({err}): image has no boxes")
        return None
    width = _int_or_zero(root.findtext("size/width"))
    height = _int_or_zero(root.findtext("size/height"))
    lowered = {name.lower(): label for name, label in class_to_index.items()}
    boxes: List[List[float]] = []
    labels: List[int] = []
    difficult: List[bool] = []
    names: List[str] = []
    for i, obj in enumerate(root.iter("object")):
        name = (obj.findtext("name") or "").strip()
        label = class_to_index.get(name, lowered.get(name.lower()))
        if label is None:
            issues.warn(f"{path}: object {i} has unknown class {name!r}: skipped")
            continue
        coords = [_float_or_none(obj.findtext(f"bndbox/{key}")) for key in _COORDS]
        if any(c is None for c in coords):
            issues.warn(
                f"{path}: object {i} ({name}) has a missing or non-numeric bndbox "
                "coordinate: skipped"
            )
            continue
        boxes.append([c - 1.0 for c in coords])
        labels.append(label)
        difficult.append(bool(_int_or_zero(obj.findtext("difficult"))))
        names.append(name)
    keep, clean = clean_boxes(
        np.array(boxes, dtype=np.float64).reshape(-1, 4), width, height, path, issues, names
    )
    return dict(
        width=width,
        height=height,
        boxes=clean[keep].reshape(-1, 4),
        gt_classes=np.array(labels, dtype=np.int64)[keep],
        difficult=np.array(difficult, dtype=bool)[keep],
    )


def write_voc_xml(
    path: str,
    filename: str,
    width: int,
    height: int,
    objects: Sequence[Tuple[str, Sequence[float], bool]],
    folder: str = "VOC",
) -> None:
    """Write a VOC annotation file.

    Args:
        objects: (class name, box [x1, y1, x2, y2] 0-based +1 convention, difficult); the file
            gets 1-based coordinates like real VOC.
    """
    lines = [
        "<annotation>",
        f"\t<folder>{folder}</folder>",
        f"\t<filename>{filename}</filename>",
        "\t<size>",
        f"\t\t<width>{width}</width>",
        f"\t\t<height>{height}</height>",
        "\t\t<depth>3</depth>",
        "\t</size>",
        "\t<segmented>0</segmented>",
    ]
    for name, box, hard in objects:
        x1, y1, x2, y2 = (_fmt(v + 1) for v in box)
        lines += [
            "\t<object>",
            f"\t\t<name>{name}</name>",
            "\t\t<pose>Unspecified</pose>",
            "\t\t<truncated>0</truncated>",
            f"\t\t<difficult>{int(hard)}</difficult>",
            "\t\t<bndbox>",
            f"\t\t\t<xmin>{x1}</xmin>",
            f"\t\t\t<ymin>{y1}</ymin>",
            f"\t\t\t<xmax>{x2}</xmax>",
            f"\t\t\t<ymax>{y2}</ymax>",
            "\t\t</bndbox>",
            "\t</object>",
        ]
    lines.append("</annotation>\n")
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines))
    os.replace(tmp, path)


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _float_or_none(text: Optional[str]) -> Optional[float]:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def _int_or_zero(text: Optional[str]) -> int:
    value = _float_or_none(text)
    if value is None or not np.isfinite(value) or value <= 0:
        return 0
    return int(value)
