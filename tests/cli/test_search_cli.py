"""``vecmetric search`` end to end: expressions, --like, filters, outputs for pipelines and eyes, bad input."""

from __future__ import annotations

import base64
import io
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from _helpers import one_error_line
from PIL import Image

from vecmetric.cli._app import app

COLOURS = [(230, 20, 20), (20, 180, 40), (30, 40, 220), (240, 200, 0), (150, 0, 160)]


@pytest.fixture(scope="module")
def colour_store(tmp_path_factory, small_model):
    """10 solid-colour PNGs (5 colours x 2, one folder per colour) embedded with the 32 px model and indexed.

    Returns (store, {path: colour}).
    """
    from vecmetric.index import build_index
    from vecmetric.runtime import model_dir
    from vecmetric.store import embed_directory, open_store

    root = tmp_path_factory.mktemp("colours")
    colour_of = {}
    for c, colour in enumerate(COLOURS):
        for i in range(2):
            path = root / "images" / f"colour_{c}" / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            shade = tuple(max(0, v - 12 * i) for v in colour)
            Image.new("RGB", (120 + 40 * i, 90), shade).save(path)
            colour_of[str(path)] = shade
    store = root / "store"
    embed_directory(root / "images", store, model=small_model, device="cpu", precision="fp32", workers=0)
    build_index(open_store(store))
    shutil.rmtree(model_dir(store), ignore_errors=True)
    return store, colour_of


def run(runner, *args, input=None, code=0):
    result = runner.invoke(app, ["search", *[str(a) for a in args]], input=input)
    assert result.exit_code == code, f"exit {result.exit_code}\n{result.stdout}\n{result.stderr}\n{result.exception!r}"
    return result


def records(result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def test_expressions_like_and_stdin(runner, colour_store):
    from vecmetric.query import parse_arguments, search_store

    store, colour_of = colour_store
    paths = sorted(colour_of)
    expression = [paths[0], "+", "2:@3", "-", "0.5:" + paths[9]]
    hits = records(run(runner, *expression, "--store", store, "--k", "4", "--json"))
    library = search_store(store, parse_arguments(expression), k=4)[0]
    assert [h["id"] for h in hits] == [h.id for h in library] and len(hits) == 4
    assert {h["query"] for h in hits} == {" ".join(expression)}
    assert not {paths[0], paths[3], paths[9]} & {h["path"] for h in hits}  # its own images are left out

    like = records(run(runner, "--like", "3", "--store", store, "--k", "2", "--json"))
    assert [h["query"] for h in like] == ["@3", "@3"] and 3 not in {h["id"] for h in like}
    assert like == records(run(runner, "@3", "--store", store, "--k", "2", "--json"))
    by_path = records(run(runner, "--like", paths[3], "--store", store, "--k", "2", "--json"))
    assert [h["id"] for h in by_path] == [h["id"] for h in like]

    stdin = f"{paths[0]} + 2:@3 - 0.5:{paths[9]}\n\n@3\n"
    piped = records(run(runner, "-", "--store", store, "--k", "4", "--json", input=stdin))
    assert [h["id"] for h in piped[:4]] == [h["id"] for h in hits] and [h["query"] for h in piped[4:]] == ["@3"] * 4


def test_filters_on_the_command_line(runner, colour_store):
    store, colour_of = colour_store
    paths = sorted(colour_of)
    hits = records(run(runner, "--like", "0", "--label", "colour_2", "--label", "colour_4", "--store", store, "--k", "10", "--json"))
    assert sorted(h["label"] for h in hits) == ["colour_2", "colour_2", "colour_4", "colour_4"]
    hits = records(run(runner, "--like", "0", "--path", "*/1.png", "--store", store, "--k", "10", "--json", "--exact"))
    assert len(hits) == 5 and all(h["path"].endswith("/1.png") for h in hits)  # each colour's 1.png (the query is a 0.png)
    all_hits = records(run(runner, "--like", "0", "--store", store, "--k", "9", "--json", "--exact"))
    limit = all_hits[2]["distance"] + 1e-6
    cut = records(run(runner, "--like", "0", "--max-distance", str(limit), "--store", store, "--k", "9", "--json", "--exact"))
    assert cut == all_hits[:3]
    kept = records(run(runner, paths[0], "--keep-query-images", "--store", store, "--k", "1", "--json"))
    assert kept[0]["path"] == paths[0] and kept[0]["distance"] < 1e-6


def test_paths_output_for_xargs(runner, colour_store):
    store, colour_of = colour_store
    paths = sorted(colour_of)
    as_json = records(run(runner, paths[0], paths[5], "--store", store, "--k", "3", "--json"))
    out = run(runner, paths[0], paths[5], "--store", store, "--k", "3", "--paths")
    assert out.stdout.splitlines() == [h["path"] for h in as_json] and out.stderr == ""


class Figures(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows, self._figure = [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.rows.append([])
        elif tag == "figure":
            self._figure = {"class": attrs.get("class"), "href": None, "src": None}
            self.rows[-1].append(self._figure)
        elif tag == "a" and self._figure is not None:
            self._figure["href"] = attrs["href"]
        elif tag == "img" and self._figure is not None:
            self._figure["src"] = attrs["src"]


def mean_colour(img) -> tuple[float, ...]:
    import numpy as np

    return tuple(np.asarray(img.convert("RGB"), dtype=np.float64).reshape(-1, 3).mean(axis=0))


def test_html_contact_sheet(runner, colour_store, tmp_path):
    store, colour_of = colour_store
    paths = sorted(colour_of)
    args = [paths[0], "+", "@5", "--store", store, "--k", "4"]
    hits = records(run(runner, *args, "--json"))
    done = run(runner, *args, "--html", tmp_path / "sheet.html")
    assert f"contact sheet written to {tmp_path / 'sheet.html'}" in done.stderr.replace("\n", "")
    parser = Figures()
    parser.feed((tmp_path / "sheet.html").read_text(encoding="utf-8"))
    (row,) = parser.rows
    queries, results = row[:2], row[2:]
    assert [f["class"] for f in queries] == ["query", "query"]
    assert [f["href"] for f in queries] == [Path(paths[0]).as_uri(), Path(paths[5]).as_uri()]
    assert [f["href"] for f in results] == [Path(h["path"]).as_uri() for h in hits]  # every result, in order
    for figure in queries + results:
        path = Path(figure["href"].removeprefix("file://")).as_posix()
        thumb = Image.open(io.BytesIO(base64.b64decode(figure["src"].split(",", 1)[1])))
        assert thumb.format == "JPEG" and max(thumb.size) <= 160
        assert all(abs(a - b) < 8 for a, b in zip(mean_colour(thumb), colour_of[path])), path


def test_png_contact_sheet(runner, colour_store, tmp_path):
    from vecmetric.present import results_sheet, write_png_sheet
    from vecmetric.query import parse_arguments, search_store

    store, colour_of = colour_store
    paths = sorted(colour_of)
    hits = records(run(runner, paths[0], "@5", "--store", store, "--k", "3", "--json"))
    run(runner, paths[0], "@5", "--store", store, "--k", "3", "--sheet", tmp_path / "sheet.png")
    layout = write_png_sheet(results_sheet(search_store(store, parse_arguments([paths[0], "@5"]), k=3)), tmp_path / "again.png")
    img = Image.open(tmp_path / "sheet.png").convert("RGB")
    assert img.size == (layout.width, layout.height)
    expected = [[paths[0], *[h["path"] for h in hits[:3]]], [paths[5], *[h["path"] for h in hits[3:]]]]
    for boxes, row in zip(layout.cells, expected):
        assert len(boxes) == len(row) == 4
        for (left, top, right, bottom), path in zip(boxes, row):
            # Thumbnails keep their aspect, centred in the box: the box's centre is the image's colour.
            cx, cy = (left + right) // 2, (top + bottom) // 2
            centre = img.crop((cx - 10, cy - 10, cx + 10, cy + 10))
            assert {c for _, c in centre.getcolors(400)} == {colour_of[path]}, path


def test_preview(runner, colour_store, monkeypatch):
    import vecmetric.present

    store, _ = colour_store
    done = run(runner, "--like", "1", "--store", store, "--k", "2", "--preview")
    assert done.stderr.startswith("Warning: cannot show previews: standard output is not a terminal")
    assert "rank" in done.stdout and "colour_" in done.stdout  # the table instead
    monkeypatch.setattr(vecmetric.present, "detect_protocol", lambda *a, **k: "kitty")
    lines = run(runner, "--like", "1", "--store", store, "--k", "2", "--preview").stdout.splitlines()
    assert lines[0] == "@1" and len(lines) == 3
    assert all(line.startswith("\x1b_Ga=T,f=100") and "colour_" in line for line in lines[1:])


def test_fallback_to_torch_says_how_to_make_it_fast(runner, colour_store, tmp_path):
    store, colour_of = colour_store
    query = tmp_path / "new.png"
    Image.new("RGB", (64, 64), COLOURS[2]).save(query)
    done = run(runner, query, "--store", store, "--k", "2", "--json")
    warnings = done.stderr.strip().splitlines()
    assert len(warnings) == 1 and warnings[0].startswith("Warning: searching with torch"), done.stderr
    assert f"vecmetric export --store {store}" in done.stderr.replace("\n", "")
    assert [h["label"] for h in records(done)][0] == "colour_2"


@pytest.mark.parametrize(
    "args, code, needles",
    [
        (["@999"], 3, ["no stored image has id 999"]),
        (["--like", "999"], 3, ["no stored image has id 999"]),
        (["--like", "/nowhere/x.png"], 3, ["/nowhere/x.png is not in the store"]),
        (["2x:a red car"], 3, ["weight '2x'", "is not a number"]),
        (["0:a red car"], 3, ["must be a positive number"]),
        ([""], 3, ["empty query"]),
        (["a", "+"], 3, ["'+' at the end"]),
        (["missing/photo.jpg"], 3, ["query image missing/photo.jpg does not exist"]),
        (["a red car"], 4, ["text term 'a red car'", "cannot embed text", "open_clip"]),
        (["@1", "--json", "--paths"], 2, ["--json and --paths cannot go together"]),
        ([], 2, ["no queries given"]),
        (["@1", "--path", ""], 3, ["--path needs a glob"]),
    ],
)
def test_bad_input_is_one_error_line(runner, colour_store, args, code, needles):
    store, _ = colour_store
    result = runner.invoke(app, ["search", *args, "--store", str(store)])
    one_error_line(result, code, *needles)
    assert result.stdout == ""


def test_help_lists_every_option_with_its_default(runner):
    text = runner.invoke(app, ["search", "--help"], env={"COLUMNS": "250"}).stdout
    for option in ("--like", "--label", "--path", "--max-distance", "--keep-query-images", "--paths", "--json", "--html", "--sheet", "--preview", "--k", "--ef", "--exact", "--text", "--model", "--device", "--store"):
        assert option in text, option
    for default in ("(default: any label)", "(default: no limit)", "(default: the index's, 64)", "default: 5"):
        assert default in text, default
