"""The class-level split and training samples."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vecmetric.errors import TrainError
from vecmetric.evaluate import scan_class_folders
from vecmetric.train import parse_val_classes, split_classes
from vecmetric.train.data import TrainImages


@settings(max_examples=60, deadline=None)
@given(n=st.integers(4, 60), fraction=st.floats(0.0, 0.6), seed=st.integers(0, 2**16))
def test_class_split_never_leaks_and_is_deterministic(n, fraction, seed):
    names = [f"c{i}" for i in range(n)]
    try:
        train, val = split_classes(names, fraction, seed)
    except TrainError:
        assert n - max(2, round(fraction * n)) < 2  # only refused when too few classes are left
        return
    assert not set(train) & set(val)
    assert sorted(train + val) == sorted(names)
    assert len(train) >= 2 and (len(val) == 0 or len(val) >= 2)
    assert (train, val) == split_classes(list(reversed(names)), fraction, seed)


def test_explicit_val_classes_and_their_errors():
    names = ["a", "b", "c", "d", "e"]
    assert split_classes(names, parse_val_classes("d, b"), 0) == (["a", "c", "e"], ["b", "d"])
    with pytest.raises(TrainError, match="not in the data: zz"):
        split_classes(names, ["a", "zz"], 0)
    with pytest.raises(TrainError, match="at least 2"):
        split_classes(names, ["a"], 0)
    with pytest.raises(TrainError, match="left for training"):
        split_classes(names, ["a", "b", "c", "d"], 0)
    assert parse_val_classes("0.25") == 0.25
    with pytest.raises(TrainError, match="fraction"):
        parse_val_classes("1.5")


def test_training_samples_depend_only_on_their_seed(class_folders):
    images = scan_class_folders(class_folders)
    dataset = TrainImages(images, image_size=24, flip=True)
    a, label = dataset[(3, 1234)]
    b, _ = dataset[(3, 1234)]
    c, _ = dataset[(3, 999)]
    assert a.dtype == torch.uint8 and a.shape == (3, 24, 24)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert label == images.labels[3]
