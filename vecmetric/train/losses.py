"""Loss, miner and distance, built from the training options by composition.

One distance object serves the loss, the miner and evaluation, so ``--metric`` means the
same thing everywhere:

* ``cosine``: ``CosineSimilarity`` on L2-normalised embeddings; the triplet loss is
  ``max(s(a, n) - s(a, p) + margin, 0)``.
* ``l2``: ``LpDistance(p=2)`` on raw embeddings (no normalisation, as the index will see
  them); the loss is ``max(d(a, p) - d(a, n) + margin, 0)``.
* ``ip`` (evaluation only): ``DotProductSimilarity``.
"""

from __future__ import annotations

from ..errors import TrainError

__all__ = ["MINERS", "TRAIN_METRICS", "DEFAULT_MARGIN", "build_distance", "build_loss", "build_miner", "active_triplet_fraction"]

MINERS = ("semihard", "hard", "all", "batch-hard")
TRAIN_METRICS = ("cosine", "l2")
DEFAULT_MARGIN = 0.2


def build_distance(metric: str):
    """The pytorch-metric-learning distance for ``cosine``, ``l2`` or ``ip``.

    Raises:
        TrainError: an unknown metric.
    """
    from pytorch_metric_learning import distances

    if metric == "cosine":
        return distances.CosineSimilarity()
    if metric == "l2":
        return distances.LpDistance(p=2, power=1, normalize_embeddings=False)
    if metric == "ip":
        return distances.DotProductSimilarity(normalize_embeddings=False)
    raise TrainError(f"unknown metric {metric!r}", hint="choose one of: cosine, l2")


def build_loss(metric: str, margin: float = DEFAULT_MARGIN):
    """``TripletMarginLoss`` with the metric's distance, averaged over the triplets with a non-zero loss."""
    from pytorch_metric_learning import losses

    if metric not in TRAIN_METRICS:
        raise TrainError(f"unknown --metric {metric!r}", hint="choose one of: " + ", ".join(TRAIN_METRICS))
    if not margin >= 0:
        raise TrainError(f"--margin must be >= 0, not {margin}")
    return losses.TripletMarginLoss(margin=margin, distance=build_distance(metric))


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
        return miners.TripletMarginMiner(margin=margin, type_of_triplets=name, distance=build_distance(metric))
    if name == "batch-hard":
        return miners.BatchHardMiner(distance=build_distance(metric))
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
