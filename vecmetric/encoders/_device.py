"""Device and precision choice, shared by every command."""

from __future__ import annotations

from ..errors import EncoderError

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16")


def resolve_device(device: str = "auto"):
    """Return a ``torch.device``: ``auto`` picks CUDA, then Apple MPS, then CPU.

    Raises:
        EncoderError: the device is unknown or not available on this machine.
    """
    import torch

    name = (device or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    base = name.split(":")[0]
    if base not in DEVICES:
        raise EncoderError(f"unknown device {device!r}", hint="choose one of: " + ", ".join(DEVICES))
    if base == "cuda" and not torch.cuda.is_available():
        raise EncoderError("--device cuda was asked for but CUDA is not available on this machine")
    if base == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise EncoderError("--device mps was asked for but Apple MPS is not available on this machine")
    return torch.device(name)


def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 units (AVX512-BF16 or AMX), where bf16 is several times faster."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(device, precision: str = "auto") -> str:
    """Pick ``fp32`` or ``bf16`` for inference on ``device``.

    ``auto`` uses bf16 autocast on CUDA and on CPUs with bf16 units; measured on an
    AVX512-BF16/AMX Xeon with EfficientNet-Lite0, channels_last + bf16 ran 3.7x faster
    than fp32; its embeddings keep a cosine similarity of at least 0.998 to the fp32 ones
    (worst case over 64 images, benchmarks/RESULTS.md).
    """
    import torch

    if precision not in PRECISIONS:
        raise EncoderError(f"unknown precision {precision!r}", hint="choose one of: " + ", ".join(PRECISIONS))
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        return "bf16" if cpu_supports_bf16() else "fp32"
    return "fp32"
