"""What every torch forward pass shares: uint8 images to normalised input, and autocast."""

from __future__ import annotations

import contextlib

__all__ = ["Normalizer", "inference_autocast"]


class Normalizer:
    """uint8 (N, 3, S, S) batches (tensors or numpy arrays) to normalised float, channels_last, on ``device``."""

    def __init__(self, preprocess, device):
        import torch

        self.device = device
        self.mean = torch.tensor(preprocess.mean, device=device).view(1, 3, 1, 1) * 255.0
        self.std = torch.tensor(preprocess.std, device=device).view(1, 3, 1, 1) * 255.0

    def __call__(self, batch):
        import torch

        batch = torch.as_tensor(batch).to(self.device, non_blocking=True).float()
        return ((batch - self.mean) / self.std).contiguous(memory_format=torch.channels_last)


def inference_autocast(device, precision: str):
    """bf16 autocast for ``precision == "bf16"`` on CUDA or CPU; otherwise a no-op context."""
    import torch

    if precision == "bf16" and device.type in ("cuda", "cpu"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
