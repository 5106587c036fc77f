"""Losses and miners from pytorch-metric-learning, built from the training options by composition.

``LOSSES`` is the one table of what each ``--loss`` is: its class, the metrics and geometries it
makes sense with, its miners, and which of ``--margin``, ``--temperature`` and ``--proxy-lr`` it
takes (with the library's defaults, except the triplet margin: vecmetric's 0.2). The loss, the
miner and validation all measure with the distance that ``vecmetric.distances.pml_distance``
gives for the metric, so the metric means the same thing everywhere:

* ``cosine``: cosine similarity on L2-normalised embeddings; the triplet loss is
  ``max(s(a, n) - s(a, p) + margin, 0)``.
* ``l2``: Euclidean distance on raw embeddings (no normalisation, as the index will see
  them); the loss is ``max(d(a, p) - d(a, n) + margin, 0)``.
* ``poincare`` (``--geometry hyperbolic``): the Poincare distance on the ball; ``supcon`` with it is
  Hyp-ViT's pairwise cross-entropy (Ermolov et al. 2022) over every same-class pair of the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..distances import get_metric, pml_distance
from ..errors import TrainError

__all__ = [
    "LOSSES",
    "LOSS_NAMES",
    "LossSpec",
    "MINERS",
    "DEFAULT_LOSSES",
    "DEFAULT_MARGIN",
    "get_loss",
    "build_loss",
    "build_miner",
    "active_triplet_fraction",
    "active_triplet_counts",
]


@dataclass(frozen=True)
class LossSpec:
    """One ``--loss``.

    Attributes:
        name: the ``--loss`` value; ``pml_class``: the pytorch-metric-learning class.
        metrics: the Euclidean ``--metric`` values it makes sense with; ``hyperbolic``: whether it works on the ball.
        miners: the ``--miner`` values it takes, the first the default; empty: no miner (``--miner`` refused).
        margin: the default ``--margin``, a number or ``{metric: number}``; None: no margin (``--margin`` refused).
        temperature: the default ``--temperature``, a number or ``{metric: number}``; None: none (refused).
        proxies: it has trainable parameters of its own (proxies or class weights) with their own ``--proxy-lr``.
        summary: one line for ``--help`` and errors.
    """

    name: str
    pml_class: str
    metrics: tuple[str, ...]
    hyperbolic: bool
    miners: tuple[str, ...] = ()
    margin: float | dict | None = None
    temperature: float | dict | None = None
    proxies: bool = False
    summary: str = ""

    def default_margin(self, metric: str) -> float | None:
        return self.margin.get(metric) if isinstance(self.margin, dict) else self.margin

    def default_temperature(self, metric: str) -> float | None:
        return self.temperature.get(metric) if isinstance(self.temperature, dict) else self.temperature


LOSSES: dict[str, LossSpec] = {
    spec.name: spec
    for spec in (
        LossSpec("triplet", "TripletMarginLoss", ("cosine", "l2"), True, ("semihard", "hard", "all", "batch-hard"), margin=0.2,
                 summary="triplet margin loss"),
        LossSpec("multi-similarity", "MultiSimilarityLoss", ("cosine",), False, ("multi-similarity", "all"),
                 summary="multi-similarity loss (alpha 2, beta 50, base 0.5) with its pair miner (epsilon 0.1)"),
        # Contrastive margins: the library's for distances (positives to 0, negatives beyond 1) and its advice for
        # similarities (positives to 1, negatives below 0); --margin is the negatives' one.
        LossSpec("contrastive", "ContrastiveLoss", ("cosine", "l2"), True, ("all", "batch-hard"),
                 margin={"cosine": 0.0, "l2": 1.0, "poincare": 1.0}, summary="contrastive loss over pairs"),
        LossSpec("proxy-anchor", "ProxyAnchorLoss", ("cosine",), False, margin=0.1, proxies=True,
                 summary="proxy-anchor loss (alpha 32), one learned proxy per class"),
        LossSpec("normalized-softmax", "NormalizedSoftmaxLoss", ("cosine",), False, temperature=0.05, proxies=True,
                 summary="normalized softmax: cross-entropy over cosine similarities to learned class weights"),
        # On the ball: Hyp-ViT's temperature, 0.2. At the library's 0.1 one Omniglot seed of benchmarks/losses.py collapsed
        # within 6 steps: shrinking every embedding to one point (loss log(batch - 1)) beat its first, scattered batches.
        LossSpec("supcon", "SupConLoss", ("cosine",), True, temperature={"cosine": 0.1, "poincare": 0.2},
                 summary="supervised contrastive loss; on the Poincare ball, Hyp-ViT's pairwise cross-entropy"),
    )
}
LOSS_NAMES = tuple(LOSSES)
#: The default ``--loss`` per metric, from benchmarks/losses.py (benchmarks/RESULTS.md, "Losses on unseen classes"):
#: multi-similarity beat triplet on both Omniglot sets by far more than the seeds' standard deviation. It works on
#: similarities, so ``l2`` keeps triplet (not measured); on the Poincare ball, supcon (Hyp-ViT's loss, the one measured).
DEFAULT_LOSSES = {"cosine": "multi-similarity", "l2": "triplet", "poincare": "supcon"}
MINERS = tuple(dict.fromkeys(miner for spec in LOSSES.values() for miner in spec.miners))
DEFAULT_MARGIN = LOSSES["triplet"].margin


def get_loss(name: str) -> LossSpec:
    """The ``LossSpec`` called ``name``.

    Raises:
        TrainError: an unknown loss, with the valid choices.
    """
    spec = LOSSES.get(name)
    if spec is None:
        raise TrainError(f"unknown --loss {name!r}", hint="choose one of: " + ", ".join(LOSS_NAMES))
    return spec


def _distance(metric: str, curvature: float | None = None):
    """The training distance for ``metric`` (cosine, l2, or poincare with its curvature)."""
    if metric != "poincare":
        get_metric(metric, error=TrainError, trainable=True)
    return pml_distance(metric, curvature)


def build_loss(
    metric: str,
    margin: float | None = None,
    *,
    loss: str = "triplet",
    temperature: float | None = None,
    num_classes: int | None = None,
    embedding_dim: int | None = None,
    curvature: float | None = None,
):
    """The pytorch-metric-learning loss for ``--loss`` with the metric's distance.

    Args:
        metric: ``cosine``, ``l2`` or ``poincare`` (then ``curvature`` is needed).
        margin, temperature: the loss's own settings; None: its default (``LOSSES``).
        num_classes, embedding_dim: the training classes and the embedding size (proxy losses only).

    Returns:
        A ``torch.nn.Module``; proxy losses hold their proxies (class weights) as parameters.

    Raises:
        TrainError: an unknown loss or metric, or a negative margin.
    """
    from pytorch_metric_learning import losses

    spec = get_loss(loss)
    distance = _distance(metric, curvature)
    margin = spec.default_margin(metric) if margin is None else margin
    temperature = spec.default_temperature(metric) if temperature is None else temperature
    if margin is not None and not margin >= 0:
        raise TrainError(f"--margin must be >= 0, not {margin}")
    if spec.name == "triplet":
        return losses.TripletMarginLoss(margin=margin, distance=distance)
    if spec.name == "multi-similarity":
        return losses.MultiSimilarityLoss(distance=distance)
    if spec.name == "contrastive":
        positive = 1.0 if distance.is_inverted else 0.0
        return losses.ContrastiveLoss(pos_margin=positive, neg_margin=margin, distance=distance)
    if spec.name == "supcon":
        return losses.SupConLoss(temperature=temperature, distance=distance)
    if num_classes is None or embedding_dim is None:
        raise TrainError(f"--loss {spec.name} needs the number of classes and the embedding size")
    if spec.name == "proxy-anchor":
        return losses.ProxyAnchorLoss(num_classes, embedding_dim, margin=margin, distance=distance)
    return losses.NormalizedSoftmaxLoss(num_classes, embedding_dim, temperature=temperature, distance=distance)


def build_miner(name: str | None, metric: str, margin: float | None = DEFAULT_MARGIN, *, loss: str = "triplet", curvature: float | None = None):
    """The miner for ``--miner``; None for ``all`` (every valid triplet or pair in the batch) and for losses without one.

    ``semihard``: negatives farther than the positive but inside the margin; ``hard``:
    negatives closer than the positive; ``batch-hard``: the hardest positive and negative
    per anchor; ``multi-similarity``: the multi-similarity miner's informative pairs.

    Raises:
        TrainError: a miner the loss does not take.
    """
    from pytorch_metric_learning import miners

    spec = get_loss(loss)
    if name is None:
        name = spec.miners[0] if spec.miners else None
    if name is None:
        return None
    if name not in spec.miners:
        if not spec.miners:
            raise TrainError(f"--loss {spec.name} takes no --miner")
        raise TrainError(f"unknown --miner {name!r} for --loss {spec.name}", hint="choose one of: " + ", ".join(spec.miners))
    if name == "all":
        return None
    distance = _distance(metric, curvature)
    if name in ("semihard", "hard"):
        margin = spec.default_margin(metric) if margin is None else margin
        return miners.TripletMarginMiner(margin=margin, type_of_triplets=name, distance=distance)
    if name == "batch-hard":
        return miners.BatchHardMiner(distance=distance)
    return miners.MultiSimilarityMiner(distance=distance)


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
