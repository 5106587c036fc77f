"""Fine-tuning (``train``): data split and sampling, losses and miners (``LOSSES``), the loop, run folders.

Retrieval evaluation (``evaluate``, the metrics, labelled folders) lives in ``vecmetric.evaluate``.
"""

from .data import parse_val_classes, split_classes
from .loop import TrainResult, TrainSession, epoch_line, train
from .losses import DEFAULT_LOSSES, DEFAULT_MARGIN, LOSS_NAMES, LOSSES, MINERS, build_loss, build_miner
from .options import TrainOptions
from .sampler import MPerClassBatchSampler

__all__ = [
    "DEFAULT_LOSSES",
    "DEFAULT_MARGIN",
    "LOSSES",
    "LOSS_NAMES",
    "MINERS",
    "MPerClassBatchSampler",
    "TrainOptions",
    "TrainResult",
    "TrainSession",
    "build_loss",
    "build_miner",
    "epoch_line",
    "parse_val_classes",
    "split_classes",
    "train",
]
