"""Scanning class folders, the class-level split, and training samples."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import pytest
from vecmetric.errors import InputError, TrainError
from vecmetric.train import parse_val_classes, scan_class_folders, split_classes
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


def test_scan_skips_unreadable_images_and_single_image_classes(class_folders):
    (class_folders / "class_00" / "broken.png").write_bytes(b"not a png")
    (class_folders / "class_01" / "empty.jpg").write_bytes(b"")
    lonely = class_folders / "lonely"
    lonely.mkdir()
    (class_folders / "class_02" / "img_00.png").rename(lonely / "only.png")
    (class_folders / "notes.txt").write_text("ignored")
    (class_folders / ".hidden").mkdir()
    images = scan_class_folders(class_folders)
    assert "lonely" not in images.class_names and images.single_image_classes == ["lonely"]
    assert sorted(p.rsplit("/", 1)[-1] for p, _ in images.skipped) == ["broken.png", "empty.jpg"]
    assert len(images) == 6 * 4 - 1
    messages = images.skip_messages()
    assert any("skipped 2 unreadable image(s)" in m for m in messages)
    assert any("single image" in m and "lonely" in m for m in messages)
    assert "lonely" in scan_class_folders(class_folders, min_images_per_class=1).class_names


def test_scan_of_a_missing_or_empty_folder_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        scan_class_folders(tmp_path / "nope")
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(InputError, match="no class subfolders"):
        scan_class_folders(tmp_path / "empty")


def test_training_samples_depend_only_on_their_seed(class_folders):
    images = scan_class_folders(class_folders)
    dataset = TrainImages(images, image_size=24, flip=True)
    a, label = dataset[(3, 1234)]
    b, _ = dataset[(3, 1234)]
    c, _ = dataset[(3, 999)]
    assert a.dtype == torch.uint8 and a.shape == (3, 24, 24)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert label == images.labels[3]
