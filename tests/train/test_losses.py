"""Triplet loss and active-triplet counts against values worked out by hand."""

import math

import pytest
import torch

from vecmetric.errors import TrainError
from vecmetric.train import build_loss, build_miner
from vecmetric.train.losses import active_triplet_fraction

# Triplets (anchor, positive, negative) over 4 items: 0 and 1 share a class, 2 and 3 another.
TRIPLETS = (torch.tensor([0, 0, 1, 1]), torch.tensor([1, 1, 0, 0]), torch.tensor([2, 3, 2, 3]))
LABELS = torch.tensor([0, 0, 1, 1])


def test_cosine_triplet_loss_matches_hand_computation():
    # s(a, n) - s(a, p) + margin with unit vectors: s(0,1) = 0.6, s(0,2) = 0.8, s(0,3) = 0,
    # s(1,2) = 0.96, s(1,3) = 0.8.
    emb = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.8, 0.6], [0.0, 1.0]])
    per_triplet = [0.8 - 0.6 + 0.2, max(0.0 - 0.6 + 0.2, 0.0), 0.96 - 0.6 + 0.2, 0.8 - 0.6 + 0.2]
    expected = sum(per_triplet) / sum(1 for v in per_triplet if v > 0)  # mean over non-zero triplets
    loss = build_loss("cosine", margin=0.2)(emb, LABELS, TRIPLETS)
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(1.36 / 3)
    assert active_triplet_fraction(emb, LABELS, TRIPLETS, build_loss("cosine").distance, 0.2) == (3, 4)


def test_l2_triplet_loss_matches_hand_computation_without_normalising():
    # d(a, p) - d(a, n) + margin on raw vectors: d(0,1) = 1, d(0,2) = 2, d(0,3) = sqrt(0.5),
    # d(1,2) = sqrt(5), d(1,3) = sqrt(0.5).
    emb = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [0.5, 0.5]])
    r = math.sqrt(0.5)
    per_triplet = [max(1 - 2 + 0.2, 0.0), 1 - r + 0.2, max(1 - math.sqrt(5) + 0.2, 0.0), 1 - r + 0.2]
    expected = sum(per_triplet) / 2
    loss = build_loss("l2", margin=0.2)(emb, LABELS, TRIPLETS)
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert active_triplet_fraction(emb, LABELS, TRIPLETS, build_loss("l2").distance, 0.2) == (2, 4)


def test_margin_changes_the_loss_as_expected():
    emb = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.8, 0.6], [0.0, 1.0]])
    one = (TRIPLETS[0][:1], TRIPLETS[1][:1], TRIPLETS[2][:1])
    assert build_loss("cosine", margin=0.5)(emb, LABELS, one).item() == pytest.approx(0.8 - 0.6 + 0.5, abs=1e-6)


def test_no_violating_triplet_gives_zero_loss_with_a_gradient():
    emb = torch.tensor([[1.0, 0.0], [0.99, 0.14], [0.0, 1.0], [-0.1, 0.99]], requires_grad=True)
    loss = build_loss("cosine", margin=0.1)(emb, LABELS, TRIPLETS)
    assert loss.item() == 0.0
    loss.backward()  # must not raise


@pytest.mark.parametrize("name, expected", [("semihard", "TripletMarginMiner"), ("hard", "TripletMarginMiner"), ("batch-hard", "BatchHardMiner")])
@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_miners_share_the_loss_distance(name, expected, metric):
    miner = build_miner(name, metric)
    assert type(miner).__name__ == expected
    assert type(miner.distance).__name__ == ("CosineSimilarity" if metric == "cosine" else "LpDistance")
    if name != "batch-hard":
        assert miner.type_of_triplets == name


def test_all_means_no_miner_and_every_valid_triplet_counts():
    assert build_miner("all", "cosine") is None
    emb = torch.nn.functional.normalize(torch.randn(6, 4, generator=torch.Generator().manual_seed(0)), dim=1)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    _, total = active_triplet_fraction(emb, labels, None, build_loss("cosine").distance, 0.2)
    assert total == 6 * 1 * 4  # each anchor: 1 positive x 4 negatives


def test_unknown_choices_raise_train_error():
    with pytest.raises(TrainError, match="miner"):
        build_miner("random", "cosine")
    with pytest.raises(TrainError, match="metric"):
        build_loss("manhattan")
    with pytest.raises(TrainError, match="margin"):
        build_loss("cosine", margin=-1)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
@pytest.mark.parametrize("n", [12, 300])  # 300: the anchors are counted in chunks
def test_counting_every_triplet_by_masks_equals_listing_them(metric, n):
    from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

    from vecmetric.distances import pml_distance
    from vecmetric.train.losses import active_triplet_counts

    generator = torch.Generator().manual_seed(n)
    embeddings = torch.nn.functional.normalize(torch.randn(n, 8, generator=generator), dim=1)
    labels = torch.randint(0, max(3, n // 10), (n,), generator=generator)
    distance = pml_distance(metric)
    counted = active_triplet_counts(embeddings, labels, None, distance, 0.1)
    listed = active_triplet_counts(embeddings, labels, lmu.get_all_triplets_indices(labels), distance, 0.1)
    assert [float(x) for x in counted] == [float(x) for x in listed]
    assert 0 < float(counted[0]) < float(counted[1])


def test_cosine_contrastive_loss_matches_hand_computation():
    # Similarities as above plus s(2,3) = 0.6. Positives are pulled to 1 (loss 1 - s), negatives pushed below 0
    # (loss s): positives 0.4 each; negatives 0.8, 0, 0.96, 0.8. Each part is averaged over its non-zero pairs.
    emb = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.8, 0.6], [0.0, 1.0]])
    loss = build_loss("cosine", loss="contrastive")(emb, LABELS)
    assert loss.item() == pytest.approx(0.4 + (0.8 + 0.96 + 0.8) / 3, abs=1e-6)


def test_hyperbolic_supcon_is_the_pairwise_cross_entropy_of_poincare_distances():
    """Hyp-ViT's loss: for anchor i and positive p, -log(exp(-d(i,p)/t) / sum over k != i of exp(-d(i,k)/t)),
    averaged over the positives, then over the anchors; d worked out by the Mobius-addition formula."""
    c, t = 0.5, 0.1
    emb = torch.tensor([[0.1, 0.2], [0.3, -0.1], [-0.5, 0.4], [-0.2, -0.6], [0.0, 0.9]])
    labels = torch.tensor([0, 0, 1, 1, 0])

    def mobius(x, y):
        x, y = -x.double(), y.double()
        xy, xx, yy = (x * y).sum(), (x * x).sum(), (y * y).sum()
        added = ((1 + 2 * c * xy + c * yy) * x + (1 - c * xx) * y) / (1 + 2 * c * xy + c * c * xx * yy)
        return 2 / math.sqrt(c) * math.atanh(math.sqrt(c) * added.norm().item())

    d = [[mobius(a, b) for b in emb] for a in emb]
    per_anchor = []
    for i in range(5):
        denominator = sum(math.exp(-d[i][k] / t) for k in range(5) if k != i)
        positives = [p for p in range(5) if p != i and labels[p] == labels[i]]
        per_anchor.append(-sum(math.log(math.exp(-d[i][p] / t) / denominator) for p in positives) / len(positives))
    loss = build_loss("poincare", loss="supcon", temperature=t, curvature=c)(emb, labels)
    assert loss.item() == pytest.approx(sum(per_anchor) / 5, rel=1e-4)


@pytest.mark.parametrize(
    "loss, miner, expected",
    [("multi-similarity", None, "MultiSimilarityMiner"), ("multi-similarity", "all", None), ("contrastive", None, None),
     ("contrastive", "batch-hard", "BatchHardMiner"), ("supcon", None, None), ("proxy-anchor", None, None)],
)
def test_each_loss_gets_its_miner(loss, miner, expected):
    built = build_miner(miner, "cosine", None, loss=loss)
    assert (type(built).__name__ if built is not None else None) == expected


def test_proxy_losses_hold_their_proxies_as_parameters():
    for name, shape in (("proxy-anchor", (5, 3)), ("normalized-softmax", (3, 5))):
        params = list(build_loss("cosine", loss=name, num_classes=5, embedding_dim=3).parameters())
        assert [tuple(p.shape) for p in params] == [shape], name
    assert not list(build_loss("cosine", loss="supcon").parameters())
