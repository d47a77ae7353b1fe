"""Datasets, roidb and loaders.

``get_imdb(name, data_dir, cfg=None, classes=None)`` gives a dataset; ``combined_roidb(names,
cfg, training)`` its training entries sorted by aspect ratio; ``build_train_loader(...)`` the
ratio-grouped training DataLoader; ``prepare_test_image`` / ``TestImageDataset`` the test path.
Boxes are 0-based ``[x1, y1, x2, y2]`` with the +1 convention everywhere.
"""

from fasterrcnn.data.batch_dataset import RoIBatchDataset, Sample
from fasterrcnn.data.coco import CocoDataset
from fasterrcnn.data.custom import CustomDataset
from fasterrcnn.data.factory import UnknownDatasetError, get_imdb, known_names
from fasterrcnn.data.imdb import CombinedImdb, Imdb
from fasterrcnn.data.loader import (
    TestImageDataset,
    TrainBatch,
    build_train_loader,
    collate_batch,
    prepare_test_image,
)
from fasterrcnn.data.pascal_voc import VOC_CLASSES, PascalVoc
from fasterrcnn.data.roidb import BadImagesError, combined_roidb, flip_entry
from fasterrcnn.data.sampler import AspectRatioBatchSampler
from fasterrcnn.data.shapes import SHAPE_CLASSES, ShapesDataset, ensure_shapes

__all__ = [
    "AspectRatioBatchSampler",
    "BadImagesError",
    "CocoDataset",
    "CombinedImdb",
    "CustomDataset",
    "Imdb",
    "PascalVoc",
    "RoIBatchDataset",
    "SHAPE_CLASSES",
    "Sample",
    "ShapesDataset",
    "TestImageDataset",
    "TrainBatch",
    "UnknownDatasetError",
    "VOC_CLASSES",
    "build_train_loader",
    "collate_batch",
    "combined_roidb",
    "ensure_shapes",
    "flip_entry",
    "get_imdb",
    "known_names",
    "prepare_test_image",
]
