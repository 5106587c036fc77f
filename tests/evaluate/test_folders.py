"""Labelled folders as train and eval read them: classes by the store's label rule, skips, errors."""

import pytest

from vecmetric.errors import InputError
from vecmetric.evaluate import scan_class_folders


@pytest.fixture
def class_folders(tmp_path):
    from _helpers import make_class_folders

    return make_class_folders(tmp_path / "data")


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
