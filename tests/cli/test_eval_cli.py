"""`vecmetric eval`: JSON keys, the table, a store's labelled rows, and bad input."""

import json

import numpy as np
import pytest
from _helpers import TINY_MODEL, make_class_folders
from typer.testing import CliRunner

from vecmetric.cli._app import app

KEYS = [
    "precision_at_1",
    "r_precision",
    "mean_average_precision_at_r",
    "recall_at_1",
    "recall_at_5",
    "recall_at_10",
    "num_images",
    "num_classes",
    "num_queries",
    "num_skipped",
]


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = make_class_folders(tmp_path_factory.mktemp("eval") / "data", classes=4, per_class=3)
    (root / "class_00" / "bad.png").write_bytes(b"junk")
    (root / "solo").mkdir()
    (root / "class_01" / "img_00.png").rename(root / "solo" / "img_00.png")
    return root


def test_eval_json_is_one_object_with_exactly_the_metrics_and_counts(data):
    result = run("eval", data, "--model", TINY_MODEL, "--json", "--device", "cpu", "--workers", "0")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    out = json.loads(lines[0])
    assert list(out) == KEYS
    # 4 x 3 images, one moved to a single-image class (kept as a distractor, not a query), one unreadable skipped.
    assert (out["num_images"], out["num_classes"], out["num_queries"], out["num_skipped"]) == (12, 5, 11, 1)
    assert all(0.0 <= out[k] <= 1.0 for k in KEYS[:6])
    assert out["recall_at_1"] == pytest.approx(out["precision_at_1"])
    assert "Warning: skipped 1 unreadable image(s)" in result.stderr


def test_eval_table(data):
    result = run("eval", data, "--model", TINY_MODEL, "--device", "cpu", "--workers", "0", "--batch-size", "5")
    assert result.exit_code == 0, result.stderr
    for label in ("precision@1", "R-precision", "MAP@R", "recall@1", "recall@5", "recall@10", "11 queries, 5 classes"):
        assert label in result.stdout


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["{tmp}/missing", "--model", TINY_MODEL], 3, "does not exist"),
        ([], 3, "give DATA_DIR"),
        (["{data}", "--model", "timm:nope_not_a_model"], 4, "unknown timm model"),
        (["{data}", "--model", TINY_MODEL, "--metric", "hamming"], 3, "unknown --metric 'hamming'"),
    ],
)
def test_eval_bad_input(data, tmp_path, args, code, message):
    result = run("eval", *[a.format(tmp=tmp_path, data=data) for a in args], "--device", "cpu")
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert result.stderr.startswith("Error:") and message in result.stderr


def test_eval_store_uses_its_labelled_rows_and_metric(tmp_path, fake_encoder, write_rows):
    from vecmetric.store import create_store

    # The same points on a line as tests/evaluate/test_metrics.py (known answers under l2), plus an unlabelled row.
    vectors = np.array([[0.0, 0], [1, 0], [2.5, 0], [10, 0], [11, 0], [13, 0], [100, 0], [5, 0]])
    labels = ["A", "A", "B", "B", "B", "A", "C", None]
    store = create_store(tmp_path / "store", fake_encoder(2, metric="l2"))
    write_rows(store, range(len(labels)), vectors, labels)
    result = run("eval", "--store", tmp_path / "store", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["precision_at_1"] == pytest.approx(4 / 6)
    assert out["mean_average_precision_at_r"] == pytest.approx(2 / 6)
    assert out["recall_at_5"] == 1.0 and out["num_skipped"] == 1 and out["num_queries"] == 6
    assert "1 store row(s) without a label" in result.stderr


def test_eval_of_a_real_store_matches_eval_of_its_folder(tmp_path, data):
    from vecmetric.store import embed_directory

    embed_directory(data, tmp_path / "store", model=TINY_MODEL, device="cpu", workers=0)
    from_store = run("eval", "--store", tmp_path / "store", "--json")
    from_folder = run("eval", data, "--model", TINY_MODEL, "--device", "cpu", "--workers", "0", "--json")
    assert from_store.exit_code == 0 and from_folder.exit_code == 0, from_store.output + from_folder.output
    store_out, folder_out = json.loads(from_store.stdout), json.loads(from_folder.stdout)
    for key in KEYS[:-1]:  # num_skipped differs: the store never held the unreadable file
        assert store_out[key] == pytest.approx(folder_out[key], abs=1e-6), key
