"""Retrieval evaluation: labelled folders, the metrics, and ``evaluate`` (the API behind ``vecmetric eval``).

Training's validation uses the same folders, metrics and embedding loop.
"""

from ._evaluate import COUNT_KEYS, embed_batches, evaluate, evaluate_embeddings
from .folders import EvalImages, LabelledImages, SampleError, collate_samples, scan_class_folders
from .metrics import METRIC_KEYS, retrieval_metrics

__all__ = [
    "COUNT_KEYS",
    "EvalImages",
    "LabelledImages",
    "METRIC_KEYS",
    "SampleError",
    "collate_samples",
    "embed_batches",
    "evaluate",
    "evaluate_embeddings",
    "retrieval_metrics",
    "scan_class_folders",
]
