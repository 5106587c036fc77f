"""The M-per-class batch sampler: positives in every batch, determinism, DDP shares, bad settings."""

from collections import Counter

import pytest

from vecmetric.errors import TrainError
from vecmetric.train import MPerClassBatchSampler
from vecmetric.train.sampler import check_sampler_options

LABELS = [c for c in range(7) for _ in range(3 + c)]  # 7 classes of 3..9 images


def batches(sampler, epoch=0):
    sampler.set_epoch(epoch)
    return [list(batch) for batch in sampler]


@pytest.mark.parametrize("m, batch_size", [(2, 8), (3, 12), (3, 6)])
def test_every_batch_has_m_distinct_images_of_each_of_its_classes(m, batch_size):
    sampler = MPerClassBatchSampler(LABELS, m, batch_size, seed=1)
    out = batches(sampler)
    assert len(out) == len(sampler) == len(LABELS) // batch_size
    for batch in out:
        indices = [i for i, _ in batch]
        assert len(indices) == batch_size
        assert len(set(indices)) == batch_size
        counts = Counter(LABELS[i] for i in indices)
        assert len(counts) == batch_size // m
        assert set(counts.values()) == {m}


def test_same_seed_and_epoch_give_the_same_batches_and_sample_seeds():
    a = MPerClassBatchSampler(LABELS, 2, 8, seed=5)
    b = MPerClassBatchSampler(LABELS, 2, 8, seed=5)
    assert batches(a, 3) == batches(b, 3)
    assert batches(a, 3) != batches(a, 4)
    assert batches(a, 3) != batches(MPerClassBatchSampler(LABELS, 2, 8, seed=6), 3)


def test_ddp_ranks_deal_the_global_sequence_round_robin():
    single = MPerClassBatchSampler(LABELS, 2, 8, seed=2, world_size=2, rank=0, steps_per_epoch=4)
    other = MPerClassBatchSampler(LABELS, 2, 8, seed=2, world_size=2, rank=1, steps_per_epoch=4)
    reference = MPerClassBatchSampler(LABELS, 2, 8, seed=2, steps_per_epoch=8)
    assert len(single) == 4
    merged = [batch for pair in zip(batches(single), batches(other)) for batch in pair]
    assert merged == batches(reference)


def test_over_an_epoch_every_class_is_drawn():
    sampler = MPerClassBatchSampler(LABELS, 2, 8, seed=0, steps_per_epoch=30)
    seen = {LABELS[i] for batch in batches(sampler) for i, _ in batch}
    assert seen == set(LABELS)


SIZES = {"a": 4, "b": 4, "c": 3}


@pytest.mark.parametrize(
    "m, batch_size, match",
    [
        (4, 8, "larger than 1 training class"),
        (2, 7, "multiple"),
        (4, 4, "second class"),
        (1, 8, "at least 2"),
        (2, 8, "needs 4 classes but training has 3"),
    ],
)
def test_bad_sampler_settings_raise_train_error(m, batch_size, match):
    with pytest.raises(TrainError, match=match):
        check_sampler_options(SIZES, m, batch_size)


def test_m_larger_than_a_class_names_it():
    with pytest.raises(TrainError) as info:
        check_sampler_options(SIZES, 4, 8)
    assert "c with 3 images" in str(info.value)
    assert info.value.exit_code == 7
