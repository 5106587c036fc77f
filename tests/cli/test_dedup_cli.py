"""``vecmetric dedup`` end to end: table, --json, --csv, --html, --move-to and --undo, --against, the index built
first, and every bad input as one ``Error:`` line with its exit code.

The truth is the planted groups (``plant_duplicates``), made before anything is embedded.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from _helpers import PLANTED_THRESHOLD, fake_store, file_snapshot, one_error_line, parquet_rows

from vecmetric.cli._app import app
from vecmetric.index import index_status
from vecmetric.store import embed_directory, open_store

T = str(PLANTED_THRESHOLD)


def invoke(runner, *args, code=0):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}\n{result.exception!r}"
    return result


def planted_sets(truth) -> set[frozenset[str]]:
    return {frozenset(g) for g in truth}


def test_the_table_lists_each_group_with_its_keeper_marked(runner, planted_store):
    photos, store, truth = planted_store
    assert not (store / "_index").exists()
    result = invoke(runner, "dedup", "--store", store, "--threshold", T)
    assert index_status(open_store(store)).usable  # built first, as search does
    lines = result.stdout.splitlines()
    for group in truth:
        keeper = next(line for line in lines if group[0] in line)
        assert re.search(r"\bkeep\b", keeper)
        for copy in group[1:]:
            assert re.search(r"\bmove\b", next(line for line in lines if copy in line))
    assert sum(bool(re.search(r"\bkeep\b", line)) for line in lines if str(photos) in line) == len(truth)
    assert "5 groups (1 exact, 4 near) among 25 rows; 9 files can be set aside; threshold 0.04 (1 - cosine similarity)" in result.stderr


def test_json_prints_one_group_per_line_and_csv_the_same_rows(runner, planted_store):
    _, store, truth = planted_store
    lines = [json.loads(line) for line in invoke(runner, "dedup", "--store", store, "--threshold", T, "--json").stdout.splitlines()]
    assert [list(g) for g in lines] == [["group", "kind", "files"]] * len(truth)
    assert [g["group"] for g in lines] == list(range(len(truth)))
    assert {frozenset(f["path"] for f in g["files"]) for g in lines} == planted_sets(truth)
    for g in lines:
        assert g["kind"] in ("near", "exact")
        assert [list(f) for f in g["files"]] == [["path", "id", "distance", "keep"]] * len(g["files"])
        assert [f["keep"] for f in g["files"]] == [True] + [False] * (len(g["files"]) - 1) and g["files"][0]["distance"] == 0.0
        assert all(isinstance(f["id"], int) and isinstance(f["distance"], float) for f in g["files"])
    out = invoke(runner, "dedup", "--store", store, "--threshold", T, "--csv").stdout
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["group", "kind", "path", "id", "distance", "keep"]
    flat = [[str(g["group"]), g["kind"], f["path"], str(f["id"]), str(f["distance"]), str(f["keep"]).lower()] for g in lines for f in g["files"]]
    assert rows[1:] == flat


def test_html_writes_one_row_of_thumbnails_per_group_with_the_keeper_marked(runner, planted_store, tmp_path):
    _, store, truth = planted_store
    invoke(runner, "dedup", "--store", store, "--threshold", T, "--html", tmp_path / "sheet.html")
    page = (tmp_path / "sheet.html").read_text()
    assert page.count("<section>") == len(truth)
    assert page.count('class="item marked"') == len(truth)
    assert page.count("<figure") == sum(len(g) for g in truth) and page.count("data:image/jpeg;base64,") == sum(len(g) for g in truth)


def test_move_to_prints_the_log_and_undo_puts_every_file_and_row_back(runner, planted_store, tmp_path):
    photos, store, truth = planted_store
    files_before, rows_before = file_snapshot(photos), parquet_rows(store)
    moved = invoke(runner, "dedup", "--store", store, "--threshold", T, "--move-to", tmp_path / "aside")
    log = Path(moved.stdout.strip())
    assert moved.stdout == f"{log}\n" and log.is_file() and log.parent == (tmp_path / "aside").resolve()
    assert "moved 9 files" in moved.stderr and f"vecmetric dedup --undo {log}" in moved.stderr
    copies = {p for g in truth for p in g[1:]}
    assert not any(Path(p).exists() for p in copies)
    assert all((tmp_path / "aside" / Path(p).relative_to(photos)).is_file() for p in copies)
    assert invoke(runner, "verify", "--store", store).stdout.startswith("ok: 16 rows")
    assert invoke(runner, "dedup", "--store", store, "--threshold", T, "--json").stdout == ""

    undone = invoke(runner, "dedup", "--undo", log)
    assert undone.stdout.startswith("put back 9 files and 9 rows")
    assert file_snapshot(photos) == files_before
    assert parquet_rows(store).equals(rows_before)
    assert invoke(runner, "verify", "--store", store).stdout.startswith("ok: 25 rows")
    one_error_line(invoke(runner, "dedup", "--undo", log, code=3), 3, "undone already")


def test_against_lists_the_rows_that_leak_from_another_store(runner, planted_store, tmp_path, small_model):
    _, store, truth = planted_store
    train = tmp_path / "train"
    train.mkdir()
    shutil.copyfile(truth[0][0], train / "a.png")  # the bytes of an original in the store
    shutil.copyfile(truth[1][1], train / "b.png")  # a near copy of another
    embed_directory(train, tmp_path / "train-store", model=small_model, workers=0)
    out = invoke(runner, "dedup", "--store", store, "--against", tmp_path / "train-store", "--threshold", T, "--json").stdout
    groups = [json.loads(line) for line in out.splitlines()]
    assert {(g["files"][0]["path"], frozenset(f["path"] for f in g["files"][1:])) for g in groups} == {
        (str(train / "a.png"), frozenset(truth[0])),
        (str(train / "b.png"), frozenset(truth[1])),
    }
    assert all(f["keep"] == f["path"].startswith(str(train)) for g in groups for f in g["files"])


def test_help_documents_every_option_with_its_default(runner):
    text = invoke(runner, "dedup", "--help").stdout
    for option in ("--store", "--threshold", "--auto", "--keep", "--json", "--csv", "--html", "--move-to", "--undo", "--against"):
        assert option in text
    assert "0.25" in text and "default: oldest" in text and "VECMETRIC_STORE" in text


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--threshold", "abc"], ["'abc' is not a number"]),
        (["--threshold", "-0.1"], ["negative"]),
        (["--threshold", "2.5"], ["above 2"]),
        (["--keep", "best"], ["unknown keep policy", "shortest-path"]),
        (["--move-to", "{photos}/aside"], ["inside the embed root"]),
        (["--move-to", "{tmp}/a-file/aside"], ["cannot write to --move-to", "Not a directory", "nothing was moved"]),  # unwritable even for root
        (["--undo", "{tmp}/no-log.json"], ["cannot read the move log", "No such file"]),
    ],
)
def test_bad_input_is_one_error_line_and_nothing_moves(runner, planted_store, tmp_path, args, needles):
    photos, store, _ = planted_store
    (tmp_path / "a-file").write_text("a file where a folder is expected")
    before = file_snapshot(photos)
    args = [a.format(photos=photos, tmp=tmp_path) for a in args]
    one_error_line(invoke(runner, "dedup", "--store", store, *args, code=3), 3, *needles)
    assert file_snapshot(photos) == before
    assert not (photos / "aside").exists()


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--threshold", "0.1", "--auto"], "--threshold and --auto cannot go together"),
        (["--json", "--csv"], "--json and --csv cannot go together"),
        (["--move-to", "{tmp}/aside", "--json"], "takes no --json or --csv"),
        (["--undo", "{tmp}/log.json", "--threshold", "0.1"], "--undo takes no --threshold"),
    ],
)
def test_options_that_cannot_go_together_are_one_usage_error_line(runner, planted_store, tmp_path, args, needle):
    photos, store, _ = planted_store
    before = file_snapshot(photos)
    one_error_line(invoke(runner, "dedup", "--store", store, *[a.format(tmp=tmp_path) for a in args], code=2), 2, needle)
    assert file_snapshot(photos) == before and not (store / "_index").exists() and not (tmp_path / "aside").exists()


def test_an_inner_product_store_needs_a_threshold(runner, tmp_path, fake_encoder, write_rows):
    store = fake_store(tmp_path / "ip", fake_encoder, write_rows, metric="ip").path
    one_error_line(invoke(runner, "dedup", "--store", store, code=3), 3, "inner-product store needs an explicit --threshold")
    one_error_line(invoke(runner, "dedup", "--store", store, "--auto", code=3), 3, "explicit --threshold")
    rows = parquet_rows(store)
    v = np.stack(rows.column("embedding").to_numpy(zero_copy_only=False))
    d = 1 - v @ v.T  # the units search prints for ip
    threshold = float(d[0, 1]) + 1e-3  # rows 0 and 1 are near copies; 1 - inner product goes below 0
    np.fill_diagonal(d, np.inf)
    group_of = list(range(len(d)))  # connected components of the pairs within the threshold, by relabelling
    for a, b in zip(*np.nonzero(d <= threshold)):
        old, new = max(group_of[a], group_of[b]), min(group_of[a], group_of[b])
        group_of = [new if g == old else g for g in group_of]
    ids = rows.column("id").to_pylist()
    expected = {frozenset(i for i, g in zip(ids, group_of) if g == label) for label in set(group_of) if group_of.count(label) > 1}
    out = invoke(runner, "dedup", "--store", store, "--threshold", str(threshold), "--json").stdout
    found = {frozenset(f["id"] for f in json.loads(line)["files"]) for line in out.splitlines()}
    assert found == expected and any({0, 1} <= g for g in found)


def test_a_store_without_embed_roots_refuses_move_to_and_says_how_to_record_them(runner, planted_store, tmp_path):
    photos, store, _ = planted_store
    st = open_store(store)
    del st.manifest["roots"]
    st.write_manifest()
    line = one_error_line(invoke(runner, "dedup", "--store", store, "--move-to", tmp_path / "aside", code=3), 3, "records no embed root")
    assert "vecmetric embed FOLDER" in line


def test_a_missing_store_is_one_error_line(runner, tmp_path):
    one_error_line(invoke(runner, "dedup", "--store", tmp_path / "nowhere", code=5), 5, "no store at")


def test_dedup_imports_no_model_library_and_its_help_not_even_numpy(planted_store):
    import subprocess
    import sys

    _, store, _ = planted_store
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from vecmetric.cli._app import app\n"
        "assert CliRunner().invoke(app, ['dedup', '--help']).exit_code == 0\n"
        "print(sorted(m for m in ('numpy', 'pyarrow', 'hnswlib', 'torch') if m in sys.modules))\n"
        f"assert CliRunner().invoke(app, ['dedup', '--store', {str(store)!r}, '--threshold', {T!r}, '--json']).exit_code == 0\n"
        "print(sorted(m for m in ('torch', 'timm', 'open_clip', 'torchvision') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["[]", "[]"]
