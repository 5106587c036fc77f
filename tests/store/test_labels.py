"""The one label rule: the first folder below the embed root labels a file, everywhere."""

from __future__ import annotations

import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _helpers import TINY_MODEL

from vecmetric.evaluate import evaluate, scan_class_folders
from vecmetric.store import embed_directory, label_for, open_store, root_of


def labels_by_path(store):
    table = open_store(store).read_table(["path", "label"])
    return dict(zip(table.column("path").to_pylist(), table.column("label").to_pylist()))


def embed(folder, store, **kwargs):
    kwargs.setdefault("precision", "fp32")
    return embed_directory(folder, store, model=TINY_MODEL, device="cpu", workers=0, **kwargs)


@pytest.fixture
def nested(tmp_path, make_images):
    """cats/ and dogs/ with images two folders deep, plus one loose image at the top."""
    root = tmp_path / "photos"
    make_images(root / "cats" / "2023" / "summer", classes=1, per_class=3, seed=1)
    make_images(root / "cats" / "2024", classes=1, per_class=2, seed=2)
    make_images(root / "dogs", classes=2, per_class=3, seed=3)
    make_images(tmp_path / "loose", classes=1, per_class=1, seed=4)
    (tmp_path / "loose" / "class_00" / "img_000.png").rename(root / "loose.png")
    return root


def test_label_for_is_the_first_folder_below_the_root():
    assert label_for("/p/cats/2024/a.jpg", "/p") == "cats"
    assert label_for("/p/cats/a.jpg", "/p") == "cats"
    assert label_for("/p/a.jpg", "/p") is None
    assert root_of("/p/cats/a.jpg", ["/q", "/p/cats", "/p"]) == "/p"  # the outermost root holding it
    assert root_of("/p", ["/p"]) == "/p" and root_of("/elsewhere/a.jpg", ["/p"]) is None


def test_embed_labels_nested_files_by_their_class_folder_and_records_the_root(nested, tmp_path):
    embed(nested, tmp_path / "store")
    labels = labels_by_path(tmp_path / "store")
    assert {p: l for p, l in labels.items() if "/cats/" in p} and all(l == "cats" for p, l in labels.items() if "/cats/" in p)
    assert all(l == "dogs" for p, l in labels.items() if "/dogs/" in p)
    assert labels[str(nested / "loose.png")] is None
    assert open_store(tmp_path / "store").roots == [str(nested.resolve())]


def test_eval_of_a_store_and_of_its_folder_agree_on_nested_folders(nested, tmp_path):
    images = scan_class_folders(nested, min_images_per_class=1)
    assert images.class_names == ["cats", "dogs"] and len(images) == 11  # the loose file has no class
    embed(nested, tmp_path / "store", precision="auto")  # as eval embeds
    from_store = evaluate(store=tmp_path / "store")
    from_folder = evaluate(nested, TINY_MODEL, device="cpu", workers=0)
    assert from_store["num_classes"] == from_folder["num_classes"] == 2
    for key in ("precision_at_1", "r_precision", "mean_average_precision_at_r", "num_images", "num_queries"):
        assert from_store[key] == pytest.approx(from_folder[key], abs=1e-6), key


def _make_it_an_old_store(store):
    """What vecmetric wrote before the rule: parent-folder labels and no recorded roots."""
    st = open_store(store)
    for part in st.parts():
        table = pq.read_table(part)
        old = [os.path.basename(os.path.dirname(p)) for p in table.column("path").to_pylist()]
        table = table.set_column(table.schema.get_field_index("label"), "label", pa.array(old, pa.string()))
        pq.write_table(table, part)
    manifest = json.loads((store / "_manifest.json").read_text())
    del manifest["roots"]
    (store / "_manifest.json").write_text(json.dumps(manifest))


def test_an_older_store_is_relabelled_on_its_next_embed_without_re_embedding(nested, tmp_path):
    store = tmp_path / "store"
    embed(nested, store)
    vectors_before = open_store(store).read_table(["path", "embedding"]).to_pydict()
    _make_it_an_old_store(store)
    assert labels_by_path(store)[str(nested / "cats" / "2023" / "summer" / "class_00" / "img_000.png")] == "class_00"

    again = embed(nested, store)
    assert (again.embedded, again.reused, again.unchanged) == (0, 0, 12)
    assert again.relabelled == 12  # every row had its parent folder's name (the loose one: "photos")
    assert all(l == ("cats" if "/cats/" in p else "dogs" if "/dogs/" in p else None) for p, l in labels_by_path(store).items())
    after = open_store(store).read_table(["path", "embedding"]).to_pydict()
    assert dict(zip(after["path"], map(tuple, after["embedding"]))) == dict(zip(vectors_before["path"], map(tuple, vectors_before["embedding"])))
    assert embed(nested, store).relabelled == 0


def test_nested_roots_label_by_the_outermost(nested, tmp_path):
    store = tmp_path / "store"
    embed(nested / "cats", store)  # first alone: its subfolders are the classes
    assert set(labels_by_path(store).values()) == {"2023", "2024"}
    embed(nested, store)  # then the folder around it: its rows become "cats"
    labels = labels_by_path(store)
    assert {l for p, l in labels.items() if "/cats/" in p} == {"cats"}
    assert open_store(store).roots == [str((nested / "cats").resolve()), str(nested.resolve())]
    embed(nested / "cats", store)  # embedding the inner folder again keeps the outer root's labels
    assert labels_by_path(store) == labels
