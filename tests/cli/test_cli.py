"""The command line end to end: embed -> index -> search, JSON shape, help, errors and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
import typer
from _helpers import one_error_line

from vecmetric import __version__
from vecmetric.cli._app import app

JSON_KEYS = {"query", "rank", "path", "distance", "label", "id"}


def invoke(runner, *args, input=None, ok=True):
    result = runner.invoke(app, [str(a) for a in args], input=input)
    if ok:
        assert result.exit_code == 0, f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}\n{result.exception!r}"
    return result


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture
def embedded(runner, image_folder, tmp_path, tiny_model):
    """``images/`` (3 classes x 4) embedded into ``tmp_path/store`` with the tiny model."""
    store = tmp_path / "store"
    result = invoke(runner, "embed", image_folder, "--store", store, "--model", tiny_model, "--workers", "0", "--json")
    summary = json.loads(result.stdout)
    assert summary["embedded"] == 12 and summary["rows"] == 12 and summary["skipped"] == 0
    return store


# --- the main path ------------------------------------------------------------------------------


def test_embed_then_search_json(runner, embedded, image_folder):
    query = Path("images") / "class_01" / "img_002.png"  # relative to the cwd (tmp_path)
    assert not (embedded / "_index").exists()
    result = invoke(runner, "search", query, "--store", embedded, "--k", "4", "--json", "--keep-query-images")
    hits = json_lines(result.stdout)
    assert len(hits) == 4
    for rank, hit in enumerate(hits, start=1):
        assert set(hit) == JSON_KEYS
        assert hit["query"] == str(query) and hit["rank"] == rank
        assert Path(hit["path"]).is_absolute() and Path(hit["path"]).is_file()
        assert hit["label"] == Path(hit["path"]).parent.name
        assert isinstance(hit["distance"], float) and isinstance(hit["id"], int)
    assert hits[0]["path"] == str(query.resolve()) and hits[0]["label"] == "class_01"
    assert hits[0]["distance"] == pytest.approx(0.0, abs=1e-4)
    distances = [h["distance"] for h in hits]
    assert distances == sorted(distances) and distances[1] > 1e-4
    assert len({h["path"] for h in hits}) == 4
    # search built the index on the way: info says it is there and current.
    info = json.loads(invoke(runner, "info", "--store", embedded, "--json").stdout)
    assert info["index"]["count"] == 12 and info["index"]["current"] is True
    # By default a stored query image is left out of its own results; the next three come first.
    without = json_lines(invoke(runner, "search", query, "--store", embedded, "--k", "3", "--json").stdout)
    assert [h["path"] for h in without] == [h["path"] for h in hits[1:]]


def test_search_exact_agrees_with_the_index(runner, embedded, image_folder):
    query = image_folder / "class_02" / "img_001.png"
    approx = json_lines(invoke(runner, "search", query, "--store", embedded, "--k", "5", "--json", "--ef", "50").stdout)
    exact = json_lines(invoke(runner, "search", query, "--store", embedded, "--k", "5", "--json", "--exact").stdout)
    assert [h["path"] for h in exact] == [h["path"] for h in approx]
    for a, b in zip(approx, exact):
        assert a["distance"] == pytest.approx(b["distance"], abs=1e-4)


def test_k_larger_than_the_store(runner, embedded, image_folder):
    query = image_folder / "class_00" / "img_003.png"
    for extra in ([], ["--exact"]):
        hits = json_lines(invoke(runner, "search", query, "--store", embedded, "--k", "50", "--json", "--keep-query-images", *extra).stdout)
        assert [h["rank"] for h in hits] == list(range(1, 13))
        assert len({h["id"] for h in hits}) == 12


def test_queries_from_stdin(runner, embedded, image_folder):
    queries = [image_folder / "class_00" / "img_001.png", image_folder / "class_02" / "img_003.png"]
    stdin = "".join(f"{q}\n" for q in queries) + "\n"
    hits = json_lines(invoke(runner, "search", "-", "--store", embedded, "--k", "2", "--json", "--keep-query-images", input=stdin).stdout)
    assert [(h["query"], h["rank"]) for h in hits] == [(str(queries[0]), 1), (str(queries[0]), 2), (str(queries[1]), 1), (str(queries[1]), 2)]
    assert hits[0]["path"] == str(queries[0].resolve()) and hits[2]["path"] == str(queries[1].resolve())


def test_table_output(runner, embedded, image_folder):
    query = image_folder / "class_00" / "img_000.png"
    out = invoke(runner, "search", query, "--store", embedded, "--k", "2", "--keep-query-images").stdout
    assert "rank" in out and "distance" in out and "class_00" in out
    assert str(query.resolve()) in out.replace("\n", "")
    assert invoke(runner, "search", query, "--store", embedded, "--k", "2").stderr == ""  # index current: nothing on stderr


def test_info_json(runner, embedded, tiny_model):
    info = json.loads(invoke(runner, "info", "--store", embedded, "--json").stdout)
    assert info["store"] == str(embedded.resolve())
    assert info["rows"] == 12 and info["dim"] == 256 and info["metric"] == "cosine"
    assert info["model"] == tiny_model and info["fingerprint"].startswith("test_efficientnet-")
    assert info["index"] is None and info["skipped_last_run"] == 0
    assert info["versions"]["vecmetric"] == __version__
    table = invoke(runner, "info", "--store", embedded).stdout
    assert "rows" in table and "12" in table and tiny_model in table


def test_index_command(runner, embedded):
    built = json.loads(invoke(runner, "index", "--store", embedded, "--metric", "l2", "--m", "8", "--ef", "40", "--json").stdout)
    assert (built["metric"], built["count"], built["added"], built["rebuilt"]) == ("l2", 12, 12, True)
    updated = json.loads(invoke(runner, "index", "--store", embedded, "--json").stdout)
    assert (updated["metric"], updated["added"], updated["rebuilt"]) == ("l2", 0, False)
    side = json.loads((embedded / "_index" / "index.json").read_text())
    assert side["M"] == 8 and side["ef"] == 40 and side["space"] == "l2"
    text = invoke(runner, "index", "--store", embedded, "--rebuild").stdout
    assert text.startswith("index built: 12 vectors (l2)")


def test_embed_summary_and_skips(runner, image_folder, tmp_path, tiny_model):
    (image_folder / "class_00" / "empty.jpg").write_bytes(b"")
    (image_folder / "class_00" / "fake.png").write_text("not an image")
    store = tmp_path / "store"
    result = invoke(runner, "embed", image_folder, "--store", store, "--model", tiny_model, "--workers", "0", "--quiet")
    assert result.stdout.startswith("12 embedded, 0 reused, 0 unchanged, 0 removed, 2 skipped; the store holds 12 rows")
    assert f"skipped {image_folder.resolve() / 'class_00' / 'empty.jpg'}: empty file" in result.stderr
    assert f"2 files skipped; all listed in {store.resolve() / '_errors.jsonl'}" in result.stderr.replace("\n", "")
    again = invoke(runner, "embed", image_folder, "--store", store, "--workers", "0", "--quiet")
    assert again.stdout.startswith("0 embedded, 0 reused, 12 unchanged, 0 removed, 2 skipped")


def test_store_from_environment_or_cwd(runner, image_folder, tmp_path, tiny_model, monkeypatch):
    query = image_folder / "class_01" / "img_000.png"
    env_store = tmp_path / "env-store"  # VECMETRIC_STORE, set by the autouse fixture
    assert os.environ["VECMETRIC_STORE"] == str(env_store)
    invoke(runner, "embed", image_folder, "--model", tiny_model, "--workers", "0", "--quiet")
    assert (env_store / "_manifest.json").is_file()
    assert json_lines(invoke(runner, "search", query, "--json", "--k", "1", "--keep-query-images").stdout)[0]["path"] == str(query.resolve())

    monkeypatch.delenv("VECMETRIC_STORE")
    invoke(runner, "embed", image_folder, "--model", tiny_model, "--workers", "0", "--quiet")
    assert (tmp_path / "vecmetric-store" / "_manifest.json").is_file()  # ./vecmetric-store in the cwd


def test_models(runner):
    lines = invoke(runner, "models", "lite0").stdout.split()
    assert "timm:tf_efficientnet_lite0" in lines
    assert all("lite0" in line for line in lines)
    specs = [obj["spec"] for obj in json_lines(invoke(runner, "models", "timm:test_eff*", "--json").stdout)]
    assert "timm:test_efficientnet" in specs and all(s.startswith("timm:test_eff") for s in specs)
    overview = invoke(runner, "models", "lite0").stdout
    assert "default" not in overview  # a pattern filters: no source overview
    full = invoke(runner, "models").stdout
    assert "open_clip" in full and "timm" in full and "default" in full


# --- help ---------------------------------------------------------------------------------------


def commands():
    group = typer.main.get_command(app)
    return sorted(group.commands.items())


def test_every_command_has_help_for_every_option(runner):
    names = [name for name, _ in commands()]
    assert {"embed", "index", "search", "info", "models"} <= set(names)
    for name, command in commands():
        result = invoke(runner, name, "--help")
        text = result.stdout
        assert command.help, f"{name} has no description"
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"{name} {param.opts[0]} has no help"
                for opt in param.opts:
                    assert opt in text, f"'{name} --help' does not show {opt}"
            elif isinstance(param, click.Argument):
                assert param.name.upper() in text, f"'{name} --help' does not show {param.name}"


def test_root_help_lists_commands(runner):
    text = invoke(runner, "--help").stdout
    for name, _ in commands():
        assert name in text
    assert invoke(runner, "--version").stdout.strip() == f"vecmetric {__version__}"


def test_help_does_not_import_torch(tmp_path):
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from vecmetric.cli._app import app\n"
        "for args in (['--help'], ['embed', '--help'], ['search', '--help'], ['index', '--help'], ['info', '--help'], ['models', '--help']):\n"
        "    assert CliRunner().invoke(app, args).exit_code == 0, args\n"
        "print(sorted(m for m in ('torch', 'timm', 'open_clip', 'hnswlib', 'pyarrow', 'numpy') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_python_m_vecmetric_version(run_vecmetric):
    result = run_vecmetric("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"vecmetric {__version__}"


# --- errors -------------------------------------------------------------------------------------


def assert_clean_error(result, code: int, text: str) -> None:
    """One ``Error:`` line (the shared rule), a SystemExit rather than a crash, and nothing on stdout."""
    one_error_line(result, code, text)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.stdout == ""


def test_input_errors_exit_3(runner, tmp_path, tiny_model, embedded):
    long_missing = tmp_path / ("a-rather-long-folder-name-" * 4) / "photos"
    assert_clean_error(runner.invoke(app, ["embed", str(long_missing), "--model", tiny_model]), 3, f"folder {long_missing} does not exist")
    (tmp_path / "empty").mkdir()
    assert_clean_error(runner.invoke(app, ["embed", str(tmp_path / "empty"), "--model", tiny_model]), 3, "no images found")
    assert_clean_error(
        runner.invoke(app, ["search", str(tmp_path / "missing.png"), "--store", str(embedded)]), 3, "query image"
    )
    assert_clean_error(runner.invoke(app, ["index", "--store", str(embedded), "--metric", "hamming"]), 3, "unknown --metric 'hamming'")
    assert_clean_error(runner.invoke(app, ["search", "-", "--store", str(embedded)], input="\n"), 3, "no queries")
    assert_clean_error(runner.invoke(app, ["search", str(tmp_path), "--store", str(embedded)]), 3, "is not a file")
    (tmp_path / "broken.png").write_bytes(b"oops")
    assert_clean_error(runner.invoke(app, ["search", str(tmp_path / "broken.png"), "--store", str(embedded)]), 3, "broken.png")


def test_messages_with_brackets_are_printed_verbatim(runner, embedded, tmp_path):
    odd = tmp_path / "[draft]" / "x[/b].png"
    result = runner.invoke(app, ["search", str(odd), "--store", str(embedded)])
    assert_clean_error(result, 3, str(odd))


def test_model_errors_exit_4(runner, image_folder, embedded):
    assert_clean_error(
        runner.invoke(app, ["embed", str(image_folder), "--store", "new-store", "--model", "timm:no_such_net@random"]), 4, "unknown timm model"
    )
    assert_clean_error(runner.invoke(app, ["embed", str(image_folder), "--store", "new-store", "--model", "nonsense"]), 4, "unknown model spec")
    assert_clean_error(runner.invoke(app, ["search", "a cat", "--text", "--store", str(embedded)]), 4, "cannot embed text")
    assert_clean_error(runner.invoke(app, ["embed", str(image_folder), "--store", "new-store", "--device", "tpu"]), 4, "unknown device")


def test_store_errors_exit_5(runner, image_folder, embedded, tmp_path, other_tiny_model):
    query = str(image_folder / "class_00" / "img_000.png")
    assert_clean_error(runner.invoke(app, ["search", query, "--store", str(tmp_path / "nowhere")]), 5, "no store at")
    assert_clean_error(runner.invoke(app, ["info", "--store", str(tmp_path / "nowhere")]), 5, "no store at")
    assert_clean_error(
        runner.invoke(app, ["embed", str(image_folder), "--store", str(embedded), "--model", other_tiny_model]), 5, "holds vectors of model"
    )
    assert_clean_error(runner.invoke(app, ["search", query, "--store", str(embedded), "--model", other_tiny_model]), 5, "holds vectors of model")


def test_locked_store_exits_8(runner, image_folder, embedded, other_process):
    import socket

    (embedded / "_lock").write_text(json.dumps({"pid": other_process.pid, "host": socket.gethostname(), "purpose": "embed"}))
    (image_folder / "class_00" / "img_000.png").unlink()
    assert_clean_error(runner.invoke(app, ["embed", str(image_folder), "--store", str(embedded)]), 8, f"pid {other_process.pid}")


def test_usage_errors_exit_2(runner, embedded, image_folder):
    query = str(image_folder / "class_00" / "img_000.png")
    for args in (["search", query, "--k", "0"], ["embed"], ["search"], ["no-such-command"], ["embed", ".", "--batch-size", "0"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, args
        assert "Traceback" not in result.output


# --- text queries -------------------------------------------------------------------------------


@pytest.mark.slow
def test_text_search_with_an_open_clip_store(runner, make_images, tmp_path):
    pytest.importorskip("open_clip")
    make_images(tmp_path / "few", classes=2, per_class=2, size=32)
    store = tmp_path / "clip-store"
    model = "open_clip:ViT-S-32@random"  # the smallest open_clip tower, untrained: offline
    invoke(runner, "embed", tmp_path / "few", "--store", store, "--model", model, "--workers", "0", "--quiet", "--device", "cpu")
    info = json.loads(invoke(runner, "info", "--store", store, "--json").stdout)
    assert info["model"] == model and info["dim"] == 384

    args = ["search", "a red circle", "a blue square", "--text", "--store", store, "--k", "4", "--json", "--device", "cpu"]
    hits = json_lines(invoke(runner, *args).stdout)
    assert [(h["query"], h["rank"]) for h in hits] == [(q, r) for q in ("a red circle", "a blue square") for r in (1, 2, 3, 4)]
    assert all(set(h) == JSON_KEYS and Path(h["path"]).is_absolute() for h in hits)
    images = sorted(str(p.resolve()) for p in (tmp_path / "few").rglob("*.png"))
    for block in (hits[:4], hits[4:]):
        assert sorted(h["path"] for h in block) == images  # k = all: every image once
        distances = [h["distance"] for h in block]
        assert distances == sorted(distances) and all(0.0 <= d <= 2.0 for d in distances)
    # The two texts embed differently.
    assert [h["distance"] for h in hits[:4]] != [h["distance"] for h in hits[4:]]
