"""The modules that become ONNX graphs, and the two exporters (imported only when exporting)."""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import warnings

import torch
from torch import nn
from torch.nn import functional as F

EXPORTERS = ("dynamo", "torchscript")
TORCHSCRIPT_OPSET = 17
OUTPUT_NAME = "embeddings"


class ImageGraph(nn.Module):
    """uint8 images (N, 3, S, S) -> the model's embeddings: the normalisation runs inside the graph.

    It mirrors ``Encoder.normalize`` (``(x - mean * 255) / (std * 255)``) so that a caller hands
    the graph the same uint8 batch it hands the torch encoder.
    """

    tower, input_name = "image", "images"

    def __init__(self, model: nn.Module, mean, std):
        super().__init__()
        self.model = model
        self.register_buffer("pixel_mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("pixel_std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model((images.float() - self.pixel_mean) / self.pixel_std).float()


class TextGraph(nn.Module):
    """int64 token ids (N, context_length) -> L2-normalised text features (an open_clip text tower)."""

    tower, input_name = "text", "tokens"

    def __init__(self, clip_model: nn.Module):
        super().__init__()
        self.clip_model = clip_model

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.clip_model.encode_text(tokens).float(), dim=-1)


def on_cpu(module: nn.Module) -> nn.Module:
    """``module`` itself when it lives on the CPU, else a CPU copy (the caller's model stays put)."""
    import copy

    if all(p.device.type == "cpu" for p in module.parameters()):
        return module
    return copy.deepcopy(module).cpu()


def run_torch(graph: nn.Module, array) -> "object":
    """The graph run by torch in fp32 on the CPU: the reference the ONNX output is checked against."""
    with torch.no_grad():
        return graph(torch.from_numpy(array)).float().numpy()


def describe_error(exc: BaseException) -> str:
    """One line saying why an export failed (the dynamo exporter's own summary line when it has one)."""
    lines = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).splitlines() if line.strip()]
    if "## Exception summary" in lines[:-1]:
        lines = lines[lines.index("## Exception summary") + 1 :]
    return f"{type(exc).__name__}: {lines[0][:400]}" if lines else type(exc).__name__


@contextlib.contextmanager
def _quiet():
    """Silence the exporters: dynamo prints its progress, TorchScript prints whole graphs from C++ on errors."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            os.dup2(devnull.fileno(), 1)
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def export_graph(graph: nn.Module, example, exporter: str) -> tuple[bytes, int]:
    """Export ``graph`` to ONNX bytes with a dynamic batch dimension.

    Args:
        graph: an ``ImageGraph`` or ``TextGraph`` in eval mode.
        example: a numpy input batch (at least 2 rows, so the batch size is not specialised).
        exporter: ``dynamo`` (``torch.export`` based) or ``torchscript`` (the older tracer).

    Returns:
        ``(onnx_bytes, opset)``.
    """
    name = graph.input_name
    example = torch.from_numpy(example)
    with _quiet(), torch.no_grad():
        if exporter == "dynamo":
            program = torch.onnx.export(
                graph,
                (example,),
                dynamo=True,
                input_names=[name],
                output_names=[OUTPUT_NAME],
                dynamic_shapes={name: {0: torch.export.Dim("batch", min=1)}},
                verbose=False,
            )
            proto = program.model_proto
            opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
            return proto.SerializeToString(), int(opset)
        if exporter == "torchscript":
            buffer = io.BytesIO()
            torch.onnx.export(
                graph,
                (example,),
                buffer,
                dynamo=False,
                input_names=[name],
                output_names=[OUTPUT_NAME],
                dynamic_axes={name: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                opset_version=TORCHSCRIPT_OPSET,
            )
            return buffer.getvalue(), TORCHSCRIPT_OPSET
    raise ValueError(f"unknown exporter {exporter!r}; expected one of {EXPORTERS}")
