"""Loss and miner, built from the training options by composition.

The loss, the miner and validation all measure with the distance that
``vecmetric.distances.pml_distance`` gives for ``--metric``, so the metric means the same
thing everywhere:

* ``cosine``: cosine similarity on L2-normalised embeddings; the triplet loss is
  ``max(s(a, n) - s(a, p) + margin, 0)``.
* ``l2``: Euclidean distance on raw embeddings (no normalisation, as the index will see
  them); the loss is ``max(d(a, p) - d(a, n) + margin, 0)``.
"""

from __future__ import annotations

from ..distances import get_metric, pml_distance
from ..errors import TrainError

__all__ = ["MINERS", "DEFAULT_MARGIN", "build_loss", "build_miner", "active_triplet_fraction", "active_triplet_counts"]

MINERS = ("semihard", "hard", "all", "batch-hard")
DEFAULT_MARGIN = 0.2


def _distance(metric: str):
    """The training distance for ``metric`` (cosine or l2)."""
    return pml_distance(get_metric(metric, error=TrainError, trainable=True).name)


def build_loss(metric: str, margin: float = DEFAULT_MARGIN):
    """``TripletMarginLoss`` with the metric's distance, averaged over the triplets with a non-zero loss."""
    from pytorch_metric_learning import losses

    if not margin >= 0:
        raise TrainError(f"--margin must be >= 0, not {margin}")
    return losses.TripletMarginLoss(margin=margin, distance=_distance(metric))


def build_miner(name: str, metric: str, margin: float = DEFAULT_MARGIN):
    """The miner for ``--miner``; None for ``all`` (every valid triplet in the batch).

    ``semihard``: negatives farther than the positive but inside the margin; ``hard``:
    negatives closer than the positive; ``batch-hard``: the hardest positive and negative
    per anchor.

    Raises:
        TrainError: an unknown miner.
    """
    from pytorch_metric_learning import miners

    if name == "all":
        return None
    if name in ("semihard", "hard"):
        return miners.TripletMarginMiner(margin=margin, type_of_triplets=name, distance=_distance(metric))
    if name == "batch-hard":
        return miners.BatchHardMiner(distance=_distance(metric))
    raise TrainError(f"unknown --miner {name!r}", hint="choose one of: " + ", ".join(MINERS))


def active_triplet_fraction(embeddings, labels, triplets, distance, margin: float) -> tuple[int, int]:
    """How many of the triplets violate the margin (have a non-zero loss), and how many there are.

    Training logs this over every valid triplet of each batch: it falls as the embedding learns.

    Args:
        triplets: ``(anchors, positives, negatives)`` index tensors, or None for every valid triplet.

    Returns:
        ``(active, total)``.
    """
    active, total = active_triplet_counts(embeddings, labels, triplets, distance, margin)
    return int(active.item()), int(total.item())


def active_triplet_counts(embeddings, labels, triplets, distance, margin: float):
    """``active_triplet_fraction`` as two tensors on the embeddings' device.

    With ``triplets`` None every valid (anchor, positive, negative) of the batch counts; they are
    counted with masks rather than listed, so the training loop never waits for the device here.
    """
    import torch

    with torch.no_grad():
        mat = distance(embeddings.detach().float())
        if triplets is not None:
            anchors, positives, negatives = triplets
            ap, an = mat[anchors, positives], mat[anchors, negatives]
            violation = (an - ap) if distance.is_inverted else (ap - an)
            return (violation + margin > 0).sum().float(), torch.tensor(float(len(anchors)), device=embeddings.device)
        n = len(labels)
        same = labels[:, None] == labels[None, :]
        positive = same & ~torch.eye(n, dtype=torch.bool, device=labels.device)
        negative = ~same
        count = torch.zeros((), device=embeddings.device)
        total = torch.zeros((), device=embeddings.device)
        chunk = max(1, (1 << 24) // max(1, n * n))  # anchors per step: at most 16M (a, p, n) cells
        for start in range(0, n, chunk):
            d = mat[start : start + chunk]
            valid = positive[start : start + chunk, :, None] & negative[start : start + chunk, None, :]
            # Cell [a, p, n]: d[a, p] broadcast along n, d[a, n] along p.
            violation = (d[:, None, :] - d[:, :, None]) if distance.is_inverted else (d[:, :, None] - d[:, None, :])
            count += ((violation + margin > 0) & valid).sum()
            total += valid.sum()
        return count, total
