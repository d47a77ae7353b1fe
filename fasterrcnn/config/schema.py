"""The typed configuration schema with the reference defaults.

Every option of faster-rcnn.pytorch's ``model/utils/config.py`` that this library uses lives
here, with py-faster-rcnn's default value.  YAML files and ``KEY VALUE`` overrides change values
(see :mod:`fasterrcnn.config.loader`); nothing else does: a config object is built once and
passed in, never mutated by the code that receives it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Tuple


@dataclass(frozen=True)
class TrainConfig:
    """Training-time options: solver, image scales, RPN and RoI sampling."""

    # Solver.
    OPTIMIZER: str = "sgd"
    LEARNING_RATE: float = 0.001
    MOMENTUM: float = 0.9
    WEIGHT_DECAY: float = 0.0005
    DOUBLE_BIAS: bool = True
    BIAS_DECAY: bool = False
    EPOCHS: int = 20
    MAX_ITERS: int = 0
    LR_SCHEDULE: str = "step"
    LR_DECAY_STEPS: Tuple[int, ...] = (5,)
    LR_DECAY_GAMMA: float = 0.1
    WARMUP_ITERS: int = 0
    WARMUP_FACTOR: float = 0.1
    CLIP_GRAD_NORM: float = 10.0
    IMS_PER_BATCH: int = 1
    NUM_WORKERS: int = 0
    DISPLAY: int = 10
    CHECKPOINT_EVERY_ITERS: int = 0
    NONFINITE_POLICY: str = "stop"
    # Mixed precision when the command line does not choose (--amp): "none" (float32), "auto"
    # (float16 on CUDA; bfloat16 on a CPU with fast bfloat16 convolutions, else float32),
    # "bf16" or "fp16".
    AMP: str = "none"
    # A checkpoint whose model weights start a fresh run (same classes; "" for none).
    INIT_WEIGHTS: str = ""
    # Images.
    SCALES: Tuple[int, ...] = (600,)
    MAX_SIZE: int = 1000
    USE_FLIPPED: bool = True
    USE_DIFFICULT: bool = False
    ASPECT_RATIO_MIN: float = 0.5
    ASPECT_RATIO_MAX: float = 2.0
    # RoI sampling (proposal target layer).
    BATCH_SIZE: int = 128
    FG_FRACTION: float = 0.25
    FG_THRESH: float = 0.5
    BG_THRESH_HI: float = 0.5
    BG_THRESH_LO: float = 0.1
    BBOX_NORMALIZE_TARGETS_PRECOMPUTED: bool = True
    BBOX_NORMALIZE_MEANS: Tuple[float, ...] = (0.0, 0.0, 0.0, 0.0)
    BBOX_NORMALIZE_STDS: Tuple[float, ...] = (0.1, 0.1, 0.2, 0.2)
    BBOX_INSIDE_WEIGHTS: Tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)
    # RPN (anchor target and proposal layers).
    RPN_POSITIVE_OVERLAP: float = 0.7
    RPN_NEGATIVE_OVERLAP: float = 0.3
    RPN_CLOBBER_POSITIVES: bool = False
    RPN_FG_FRACTION: float = 0.5
    RPN_BATCHSIZE: int = 256
    RPN_NMS_THRESH: float = 0.7
    RPN_PRE_NMS_TOP_N: int = 12000
    RPN_POST_NMS_TOP_N: int = 2000
    RPN_MIN_SIZE: int = 8
    RPN_BBOX_INSIDE_WEIGHTS: Tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)
    RPN_POSITIVE_WEIGHT: float = -1.0
    RPN_ALLOWED_BORDER: int = 0


@dataclass(frozen=True)
class TestConfig:
    """Test-time options: image scales, proposals and detection post-processing.

    SCORE_THRESH is the evaluation's threshold (the reference's 0.0, so mAP sees every
    detection); DETECT_SCORE_THRESH is the default of the one-call API ``model(images)`` and of
    :class:`fasterrcnn.Detector` (torchvision's 0.05).  MAX_PER_IMAGE caps both.
    BBOX_VOTE_THRESH > 0 turns on box voting after NMS: a detection's box becomes the
    score-weighted mean of its class's boxes overlapping it at that IoU (0: off, the reference).
    FLIP also runs the model on the mirror images and sends both passes' scored proposals to
    the NMS together (test-time augmentation, twice the inference time; off in the reference).
    """

    SCALES: Tuple[int, ...] = (600,)
    MAX_SIZE: int = 1000
    NMS: float = 0.3
    BBOX_VOTE_THRESH: float = 0.0
    FLIP: bool = False
    BBOX_REG: bool = True
    SCORE_THRESH: float = 0.0
    DETECT_SCORE_THRESH: float = 0.05
    MAX_PER_IMAGE: int = 100
    RPN_NMS_THRESH: float = 0.7
    RPN_PRE_NMS_TOP_N: int = 6000
    RPN_POST_NMS_TOP_N: int = 300
    RPN_MIN_SIZE: int = 16


@dataclass(frozen=True)
class ResNetConfig:
    """ResNet options of the reference."""

    FIXED_BLOCKS: int = 1


@dataclass(frozen=True)
class VGGConfig:
    """VGG16 options: the reference freezes conv1 and conv2 (the first 10 modules)."""

    FIXED_LAYERS: int = 10


@dataclass(frozen=True)
class BackboneConfig:
    """Backbone construction beyond the reference: width and normalisation for small runs.

    NORM is ``frozen_bn`` (the reference: BatchNorm frozen with ImageNet statistics), ``bn``
    (trainable BatchNorm, for training from scratch) or ``gn`` (GroupNorm, 32 groups).
    STYLE is ``caffe`` (the reference's Caffe-converted ResNets: stride on the first 1x1 conv,
    BGR 0-255 input minus PIXEL_MEANS) or ``pytorch`` (torchvision's ResNets and weights, input
    normalised by PIXEL_MEANS and PIXEL_STDS).
    CHANNELS_LAST runs the convolutions on channels-last tensors (faster on CPU; the weights
    and the results are the same).
    """

    STYLE: str = "caffe"
    WIDTH_MULT: float = 1.0
    NORM: str = "frozen_bn"
    PRETRAINED: str = ""
    CHANNELS_LAST: bool = True


@dataclass(frozen=True)
class DatasetConfig:
    """Which datasets to train and test on, and where custom class names come from.

    The imdb names ``path_train`` and ``path_test`` read the user's own files (see
    :mod:`fasterrcnn.data.by_path`): TRAIN_PATH and TEST_PATH are a COCO json, a VOC folder (or
    an image-set file in one) or a CSV list; FORMAT says which (``auto``: ``.json`` is COCO,
    ``.csv`` is CSV, a folder or ``.txt`` is VOC).  IMAGE_ROOT (TEST_IMAGE_ROOT for the test
    file; IMAGE_ROOT when empty) is the folder image paths are relative to; empty means the
    annotation file's folder (VOC: its JPEGImages).  With no TEST_PATH, ``path_test`` is a
    held-out VAL_FRACTION of TRAIN_PATH's images, drawn with SPLIT_SEED (and ``path_train`` the
    rest).  CLASSES_FILE (for these: one name per line or ``name,id`` rows) or CLASSES fix the
    class list and its order; otherwise class names come from the data.
    """

    TRAIN: str = "voc_2007_trainval"
    TEST: str = "voc_2007_test"
    CLASSES: Tuple[str, ...] = ()
    CLASSES_FILE: str = ""
    FORMAT: str = "auto"
    TRAIN_PATH: str = ""
    TEST_PATH: str = ""
    IMAGE_ROOT: str = ""
    TEST_IMAGE_ROOT: str = ""
    VAL_FRACTION: float = 0.0
    SPLIT_SEED: int = 0
    SHAPES_NUM_TRAIN: int = 600
    SHAPES_NUM_TEST: int = 150
    SHAPES_NUM_VAL: int = 0
    SHAPES_SEED: int = 0


@dataclass(frozen=True)
class DataCheckConfig:
    """The image check run when a training roidb is built (:mod:`fasterrcnn.data.image_check`).

    ON_BAD_IMAGE is ``stop`` (one error listing every bad file and its problem) or ``skip``
    (those images are left out of training, with a logged count).  WORKERS is the number of
    decoding threads (0: the calling thread).  The result is cached next to the roidb cache.
    """

    ON_BAD_IMAGE: str = "stop"
    WORKERS: int = 4


@dataclass(frozen=True)
class Config:
    """The whole configuration.  Attribute names follow the reference (upper case)."""

    NET: str = "res101"
    DATA_DIR: str = "data"
    RNG_SEED: int = 3
    POOLING_MODE: str = "align"
    POOLING_SIZE: int = 7
    CROP_RESIZE_WITH_MAX_POOL: bool = True
    CLASS_AGNOSTIC: bool = False
    # True: the proposal layer's NMS uses the reference's +1 areas (faster-rcnn.pytorch's
    # proposals box for box); False: torchvision's IoU, zero-area proposals dropped before NMS.
    REFERENCE_NMS: bool = False
    ANCHOR_SCALES: Tuple[float, ...] = (8.0, 16.0, 32.0)
    ANCHOR_RATIOS: Tuple[float, ...] = (0.5, 1.0, 2.0)
    # Stride of the base features: 16, or 8 for a ResNet (layer3 at stride 1, about 4x its
    # cost); anchors are FEAT_STRIDE * ANCHOR_SCALES pixels, so 8 needs doubled scales.
    FEAT_STRIDE: int = 16
    PIXEL_MEANS: Tuple[float, ...] = (102.9801, 115.9465, 122.7717)
    PIXEL_STDS: Tuple[float, ...] = (1.0, 1.0, 1.0)
    MAX_NUM_GT_BOXES: int = 20
    RPN_CHANNELS: int = 512
    TRAIN: TrainConfig = field(default_factory=TrainConfig)
    TEST: TestConfig = field(default_factory=TestConfig)
    RESNET: ResNetConfig = field(default_factory=ResNetConfig)
    VGG: VGGConfig = field(default_factory=VGGConfig)
    BACKBONE: BackboneConfig = field(default_factory=BackboneConfig)
    DATASET: DatasetConfig = field(default_factory=DatasetConfig)
    DATA_CHECK: DataCheckConfig = field(default_factory=DataCheckConfig)


CHOICES = {
    "NET": ("vgg16", "res18", "res34", "res50", "res101", "res152"),
    "POOLING_MODE": ("pool", "align", "crop"),
    "BACKBONE.NORM": ("frozen_bn", "bn", "gn"),
    "BACKBONE.STYLE": ("caffe", "pytorch"),
    "TRAIN.OPTIMIZER": ("sgd", "adam"),
    "TRAIN.LR_SCHEDULE": ("step", "cosine"),
    "TRAIN.NONFINITE_POLICY": ("stop", "skip"),
    "TRAIN.AMP": ("none", "auto", "bf16", "fp16"),
    "DATA_CHECK.ON_BAD_IMAGE": ("stop", "skip"),
    "DATASET.FORMAT": ("auto", "coco", "voc", "csv"),
}
"""Options restricted to a set of values; the loader rejects anything else by name."""
