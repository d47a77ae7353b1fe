"""Load ImageNet weights from a local file into a backbone's ``base`` and ``top``.

Accepted files (read with ``torch.load(..., weights_only=True)``):

* torchvision state dicts of ``resnet18/34/50/101/152`` and ``vgg16``;
* the Caffe-converted files the reference recommended (``resnet101_caffe.pth``,
  ``vgg16_caffe.pth``): the same key names as torchvision;
* either of these nested under ``'state_dict'`` or ``'model'`` and/or with every key prefixed
  ``'module.'`` (DataParallel checkpoints).

The backbone keeps torchvision's module names, so ``conv1.weight`` goes to ``base.conv1.weight``,
``layer4.*`` / ``classifier.*`` go to the top and everything else to the base.  The ImageNet
classifier (``fc.*`` for ResNets, ``classifier.6.*`` for VGG16) and BatchNorm's
``num_batches_tracked`` counters (ignored when the target has none, as FrozenBatchNorm2d; kept
at the model's value when the file has none, as the Caffe files) are not required;
any other difference raises :class:`WeightLoadError` listing the missing keys, the unexpected
keys and the shape mismatches.

Which input each kind of weights expects (the network always receives BGR):

=================  ===========  ==========================================  =====================
weights            style        PIXEL_MEANS (BGR)                           STDS
=================  ===========  ==========================================  =====================
Caffe (reference)  ``caffe``    102.9801, 115.9465, 122.7717 (the default)  1, 1, 1
torchvision        ``pytorch``  103.53, 116.28, 123.675                     57.375, 57.12, 58.395
=================  ===========  ==========================================  =====================

Caffe weights were trained on BGR 0-255 images with the means subtracted, so they load as they
are.  torchvision weights were trained on RGB images scaled to [0, 1] and normalised with
mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225); the table gives those statistics in
0-255 BGR units, and with ``style="pytorch"`` the loader reverses the input channels of the
first convolution so that the network takes BGR input exactly as the data pipeline supplies it.
"""

from __future__ import annotations

import logging
import os
from typing import Dict, List, Mapping, NamedTuple, Union

import torch
from torch import Tensor, nn

logger = logging.getLogger(__name__)

IGNORED_PREFIXES = ("fc.", "classifier.6.")
"""ImageNet classification layers, never part of a detection backbone."""

TOP_PREFIXES = ("layer4.", "classifier.")
"""Source keys that belong to the per-RoI top; every other key belongs to the base."""

NESTING_KEYS = ("state_dict", "model")

COUNTER = "num_batches_tracked"


class WeightLoadError(ValueError):
    """A weight file that does not match the backbone; the message lists every difference."""


class WeightReport(NamedTuple):
    """What a load did: the source keys copied, those ignored, and the first conv flipped to BGR
    (its key, or ``""`` when none was)."""

    loaded: List[str]
    ignored: List[str]
    flipped: str


def read_state_dict(
    source: Union[str, os.PathLike[str], Mapping[str, Tensor]],
) -> Dict[str, Tensor]:
    """A flat ``{key: tensor}`` from a file or mapping, un-nested and without ``module.``."""
    if isinstance(source, Mapping):
        state: object = source
    else:
        if not os.path.isfile(source):
            raise FileNotFoundError(f"pretrained weights file not found: {source}")
        state = torch.load(source, map_location="cpu", weights_only=True)
    while isinstance(state, Mapping):
        nested = [key for key in NESTING_KEYS if isinstance(state.get(key), Mapping)]
        if not nested:
            break
        state = state[nested[0]]
    if not isinstance(state, Mapping):
        raise WeightLoadError(f"{source!s}: expected a state dict, got {type(state).__name__}")
    flat: Dict[str, Tensor] = {}
    for key, value in state.items():
        if not isinstance(value, Tensor):
            continue
        name = key[len("module.") :] if key.startswith("module.") else key
        flat[name] = value
    return flat


def _first_conv_key(targets: Mapping[str, Tensor]) -> str:
    """The key of the convolution weight that takes the 3-channel image."""
    keys = [k for k, v in targets.items() if v.dim() == 4 and v.shape[1] == 3]
    if len(keys) != 1:
        raise WeightLoadError(f"cannot tell the input convolution among {keys}")
    return keys[0]


def load_backbone_weights(
    base: nn.Module,
    top: nn.Module,
    source: Union[str, os.PathLike[str], Mapping[str, Tensor]],
    style: str = "pytorch",
) -> WeightReport:
    """Copy ImageNet weights into ``base`` and ``top`` in place.

    Args:
        base, top: the halves of a backbone from :mod:`fasterrcnn.model.backbones`.
        source: a weight file path or an already loaded state dict.
        style: ``"pytorch"`` for torchvision weights (RGB: the first conv's input channels are
            reversed to take BGR), ``"caffe"`` for the reference's Caffe weights (BGR, as is).

    Raises:
        WeightLoadError: listing missing keys, unexpected keys and shape mismatches.
    """
    if style not in ("pytorch", "caffe"):
        raise ValueError(f"unknown weights style {style!r}; expected 'pytorch' or 'caffe'")
    state = read_state_dict(source)
    base_state, top_state = base.state_dict(), top.state_dict()
    targets = {**base_state, **top_state}
    ignored = sorted(
        k
        for k in state
        if k.startswith(IGNORED_PREFIXES) or (k.endswith(COUNTER) and k not in targets)
    )
    loaded = {k: v for k, v in state.items() if k not in set(ignored)}
    own_counters = {k: v for k, v in targets.items() if k.endswith(COUNTER) and k not in loaded}
    missing = sorted(set(targets) - set(loaded) - set(own_counters))
    unexpected = sorted(set(loaded) - set(targets))
    mismatched = sorted(
        f"{k}: file {tuple(loaded[k].shape)} vs model {tuple(targets[k].shape)}"
        for k in set(loaded) & set(targets)
        if loaded[k].shape != targets[k].shape
    )
    if missing or unexpected or mismatched:
        name = source if isinstance(source, (str, os.PathLike)) else "<state dict>"
        raise WeightLoadError(
            f"weights {name} do not match the backbone:\n  missing keys: {missing}\n"
            f"  unexpected keys: {unexpected}\n  shape mismatches: {mismatched}"
        )
    values = {**own_counters, **loaded}
    flipped = ""
    if style == "pytorch":
        flipped = _first_conv_key(targets)
        values[flipped] = values[flipped].flip(1)
    base.load_state_dict({k: values[k] for k in base_state}, strict=True)
    top.load_state_dict({k: values[k] for k in top_state}, strict=True)
    logger.info(
        "loaded %d backbone tensors (%d ignored%s)",
        len(loaded),
        len(ignored),
        f", {flipped} flipped RGB->BGR" if flipped else "",
    )
    return WeightReport(loaded=sorted(loaded), ignored=ignored, flipped=flipped)
