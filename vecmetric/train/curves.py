"""``curves.png``: training loss and validation metrics over the epochs of a run."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Sequence

from .._fsutil import atomic_write_bytes

__all__ = ["plot_curves"]

_VAL_LINES = (
    ("precision_at_1", "precision@1"),
    ("r_precision", "R-precision"),
    ("mean_average_precision_at_r", "MAP@R"),
)


def plot_curves(history: Sequence[dict[str, Any]], path: str | Path, metric: str = "cosine") -> Path:
    """Draw loss and active-triplet fraction (left) and validation metrics (right) to a PNG.

    Uses matplotlib's Agg backend, so no display is needed. Epoch 0 is validation before training.

    Returns:
        The picture's path.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    trained = [row for row in history if row.get("loss") is not None and row.get("epoch", 0) > 0]
    validated = [row for row in history if row.get("mean_average_precision_at_r") is not None]
    fig = Figure(figsize=(10, 4), dpi=100)
    left, right = fig.subplots(1, 2)
    if trained:
        epochs = [row["epoch"] for row in trained]
        left.plot(epochs, [row["loss"] for row in trained], marker="o", color="tab:red", label="triplet loss")
        left.set_ylabel("loss")
        twin = left.twinx()
        twin.plot(epochs, [row["active_triplets"] for row in trained], marker=".", ls="--", color="tab:gray", label="active triplets")
        twin.set_ylabel("active-triplet fraction")
        twin.set_ylim(0, 1.05)
        lines = left.get_lines() + twin.get_lines()
        left.legend(lines, [line.get_label() for line in lines], loc="upper right", fontsize="small")
    left.set_xlabel("epoch")
    left.set_title(f"training ({metric})")
    for key, label in _VAL_LINES:
        if validated:
            right.plot([row["epoch"] for row in validated], [row[key] for row in validated], marker="o", label=label)
    right.set_xlabel("epoch (0 = before training)")
    right.set_ylim(0, 1)
    right.set_title("validation on held-out classes")
    right.grid(alpha=0.3)
    if validated:
        right.legend(loc="lower right", fontsize="small")
    for axis in (left, right):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    path = Path(path)
    atomic_write_bytes(path, buffer.getvalue())
    return path
