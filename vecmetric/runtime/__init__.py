"""What runs a model at query time without torch: an ONNX export run by onnxruntime.

Importing this package, loading an export and embedding images or texts never imports torch,
timm, open_clip or torchvision. Exports are written by ``vecmetric.encoders.export``.
"""

from ._format import EXPORT_FILE, ExportInfo, export_dir, read_export_info
from ._onnx import OnnxEncoder, default_threads, load_export
from ._tokenizer import ClipTokenizer

__all__ = [
    "EXPORT_FILE",
    "ClipTokenizer",
    "ExportInfo",
    "OnnxEncoder",
    "default_threads",
    "export_dir",
    "load_export",
    "read_export_info",
]
