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
