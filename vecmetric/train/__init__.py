"""Fine-tuning with triplet loss (``train``) and retrieval evaluation (``evaluate``)."""

from .data import LabelledImages, parse_val_classes, scan_class_folders, split_classes
from .evaluate import COUNT_KEYS, evaluate, evaluate_embeddings
from .losses import DEFAULT_MARGIN, MINERS, TRAIN_METRICS, build_distance, build_loss, build_miner
from .loop import Reporter, TrainResult, train
from .metrics import METRIC_KEYS, retrieval_metrics
from .options import TrainOptions
from .sampler import MPerClassBatchSampler

__all__ = [
    "COUNT_KEYS",
    "DEFAULT_MARGIN",
    "LabelledImages",
    "METRIC_KEYS",
    "MINERS",
    "MPerClassBatchSampler",
    "Reporter",
    "TRAIN_METRICS",
    "TrainOptions",
    "TrainResult",
    "build_distance",
    "build_loss",
    "build_miner",
    "evaluate",
    "evaluate_embeddings",
    "parse_val_classes",
    "retrieval_metrics",
    "scan_class_folders",
    "split_classes",
    "train",
]
