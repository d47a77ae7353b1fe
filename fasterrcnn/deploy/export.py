"""Export the inference model: ``torch.export`` program, ``.pt2`` archive, ONNX model.

The exported graph is :class:`ExportableDetector`: preprocessed images in, fixed-size padded
detections out (see its docstring).  Resizing and normalisation stay outside the graph, done
by :func:`fasterrcnn.data.prepare_test_image` (one image) as for the eager model.  Height and
width are dynamic; the batch is one image (``prepare_test_image``'s output).

The config and class names travel with the file: ``.pt2`` archives hold them as the extra file
``fasterrcnn.json``, ONNX models as the metadata entries ``fasterrcnn.config`` and
``fasterrcnn.classes`` (JSON), so :mod:`fasterrcnn.deploy.runtime` can preprocess images and name
classes without the checkpoint.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Sequence
from types import ModuleType

import torch
from torch import Tensor, nn

from fasterrcnn.config import Config, config_to_dict
from fasterrcnn.model import FasterRCNN

PT2_EXTRA_FILE = "fasterrcnn.json"
ONNX_CONFIG_KEY = "fasterrcnn.config"
ONNX_CLASSES_KEY = "fasterrcnn.classes"
INPUT_NAMES = ("im_data", "im_info")
OUTPUT_NAMES = ("boxes", "scores", "labels", "counts")


class ExportableDetector(nn.Module):
    """A FasterRCNN in eval mode as one function of tensors with fixed-size outputs.

    ``forward(im_data (B, 3, H, W), im_info (B, 3))`` -> ``boxes (B, D, 4)`` float
    ``[x1, y1, x2, y2]`` in original-image pixels, ``scores (B, D)``, ``labels (B, D)`` int64 and
    ``counts (B,)`` int64: image ``b``'s detections are the first ``counts[b]`` rows, by
    decreasing score, the same as :meth:`FasterRCNN.postprocess`; the rows after them are zero
    (:meth:`FasterRCNN.detect` as a tuple).  ``D`` is ``cfg.TEST.MAX_PER_IMAGE``.
    """

    def __init__(self, model: FasterRCNN) -> None:
        super().__init__()
        if model.cfg.TEST.MAX_PER_IMAGE <= 0:
            raise ValueError(
                "export needs a fixed number of detections per image: "
                f"TEST.MAX_PER_IMAGE must be > 0, got {model.cfg.TEST.MAX_PER_IMAGE}"
            )
        self.model = model.eval()

    def forward(self, im_data: Tensor, im_info: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        detections = self.model.detect(im_data, im_info)
        return (detections.boxes, detections.scores, detections.labels, detections.num_detections)


def example_inputs(cfg: Config) -> tuple[Tensor, Tensor]:
    """A (1, 3, H, W) image at the test scale, W != H, and its im_info, to trace with."""
    height = cfg.TEST.SCALES[0]
    width = min(cfg.TEST.MAX_SIZE, height * 4 // 3)
    im_data = torch.zeros(1, 3, height, width)
    im_info = torch.tensor([[float(height), float(width), 1.0]])
    return im_data, im_info


def dynamic_shapes() -> tuple[dict[int, object], None]:
    """Height and width of ``im_data`` dynamic, their valid range inferred by the exporter
    (``Dim.AUTO``: the backbone's rounding, e.g. a ``ceil_mode`` max-pool, adds guards that a
    named ``Dim`` would reject)."""
    return {2: torch.export.Dim.AUTO, 3: torch.export.Dim.AUTO}, None


def export_program(model: FasterRCNN) -> torch.export.ExportedProgram:
    """``torch.export.export`` of :class:`ExportableDetector` with dynamic height and width.

    Raises RuntimeError when the exporter had to fix the height or the width to the example's.
    """
    module = ExportableDetector(model)
    device = next(model.parameters()).device
    inputs = tuple(t.to(device) for t in example_inputs(model.cfg))
    with torch.no_grad():
        program = torch.export.export(module, inputs, dynamic_shapes=dynamic_shapes())
    image = next(
        n for n in program.graph.nodes if n.op == "placeholder" and n.name == INPUT_NAMES[0]
    ).meta["val"]
    static = [
        name
        for name, size in zip(("height", "width"), image.shape[2:])
        if not isinstance(size, torch.SymInt)
    ]
    if static:
        raise RuntimeError(
            f"torch.export fixed the image {' and '.join(static)} to the example "
            f"input's {tuple(image.shape[2:])}: the model is not shape-generic"
        )
    return program


ONNX_EXTRA_HINT = (
    "ONNX export and inference need onnx, onnxscript and onnxruntime: pip install -e .[onnx]"
)


def onnx_ops() -> ModuleType:
    """:mod:`fasterrcnn.deploy.onnx_ops`, or ImportError saying how to install what it needs."""
    try:
        return importlib.import_module("fasterrcnn.deploy.onnx_ops")
    except ImportError as exc:
        raise ImportError(f"{ONNX_EXTRA_HINT} ({exc})") from exc


def _metadata(cfg: Config, classes: Sequence[str]) -> dict[str, str]:
    return {
        ONNX_CONFIG_KEY: json.dumps(config_to_dict(cfg)),
        ONNX_CLASSES_KEY: json.dumps(list(classes)),
    }


def save_pt2(
    program: torch.export.ExportedProgram, path: str, cfg: Config, classes: Sequence[str]
) -> None:
    """Write ``program`` as a ``.pt2`` archive with the config and class names."""
    extra = json.dumps({"config": config_to_dict(cfg), "classes": list(classes)})
    torch.export.save(program, path, extra_files={PT2_EXTRA_FILE: extra})


def save_onnx(
    program: torch.export.ExportedProgram, path: str, cfg: Config, classes: Sequence[str]
) -> None:
    """Translate ``program`` to ONNX (dynamo exporter) and write it with the config and classes.

    Raises ValueError for configs without an ONNX translation (``POOLING_MODE crop``).
    """
    translations = onnx_ops()
    translations.check_onnx_exportable(cfg)
    onnx_program = torch.onnx.export(
        program,
        dynamo=True,
        input_names=list(INPUT_NAMES),
        output_names=list(OUTPUT_NAMES),
        custom_translation_table=translations.onnx_translation_table(),
        verbose=False,
    )
    onnx_program.model.metadata_props.update(_metadata(cfg, classes))
    onnx_program.save(path)
