"""What runs a model at query time without torch: an ONNX export run by onnxruntime.

Importing this package, loading an export and embedding images or texts never imports torch,
timm, open_clip or torchvision. Exports are written by ``vecmetric.encoders.export``.
"""

from ._batching import BatchingEncoder
from ._format import EXPORT_FILE, ExportInfo, copy_export, export_dir, read_export_info
from ._onnx import OnnxEncoder, load_export
from ._select import MODEL_DIR, ONNXRUNTIME, TORCH, export_state, model_dir, open_query_encoder
from ._tokenizer import ClipTokenizer

__all__ = [
    "BatchingEncoder",
    "EXPORT_FILE",
    "MODEL_DIR",
    "ONNXRUNTIME",
    "TORCH",
    "ClipTokenizer",
    "copy_export",
    "ExportInfo",
    "OnnxEncoder",
    "export_dir",
    "export_state",
    "load_export",
    "model_dir",
    "open_query_encoder",
    "read_export_info",
]
