"""The command line's query syntax: terms, weights, operators, stdin lines, and the errors of each."""

from __future__ import annotations

import io
import os

import pytest

from vecmetric.errors import InputError
from vecmetric.query import Query, Term, TermKind, like_query, parse_arguments, parse_line, parse_term, query_from_dicts


@pytest.fixture
def files(tmp_path):
    """``car.jpg``, ``sub/night.png`` and ``notes`` (a file without an extension) in the cwd (tmp_path)."""
    (tmp_path / "sub").mkdir()
    for name in ("car.jpg", "sub/night.png", "notes", "2:odd.png", "a - b.png"):
        (tmp_path / name).write_bytes(b"x")
    return tmp_path


def kinds(query: Query) -> list[tuple[str, object, float]]:
    return [(t.kind.value, t.value, t.weight) for t in query.terms]


def test_plain_arguments_are_several_queries(files):
    queries = parse_arguments(["car.jpg", "a red car", "@12", "notes"])
    assert [q.source for q in queries] == ["car.jpg", "a red car", "@12", "notes"]
    assert [kinds(q) for q in queries] == [
        [("image", "car.jpg", 1.0)],
        [("text", "a red car", 1.0)],
        [("row", 12, 1.0)],
        [("image", "notes", 1.0)],  # an existing file is an image, extension or not
    ]


def test_operators_between_arguments_make_one_expression(files):
    (query,) = parse_arguments(["2:red car", "+", "./car.jpg", "-", "at night"])
    assert query.source == "2:red car + ./car.jpg - at night"
    assert kinds(query) == [("text", "red car", 2.0), ("image", "./car.jpg", 1.0), ("text", "at night", -1.0)]
    (query,) = parse_arguments(["@3", "-", "0.5:@/data/x.png", "+", "sub/night.png"])
    assert kinds(query) == [("row", 3, 1.0), ("row", "/data/x.png", -0.5), ("image", "sub/night.png", 1.0)]


def test_a_leading_plus_is_allowed():
    (query,) = parse_arguments(["+", "red", "-", "blue"])
    assert kinds(query) == [("text", "red", 1.0), ("text", "blue", -1.0)]


def test_weights(files):
    assert parse_term("0.5:car.jpg").weight == 0.5 and parse_term("0.5:car.jpg").value == "car.jpg"
    assert parse_term("3:@7") == Term(TermKind.ROW, 7, 3.0)
    assert parse_term("1e1:red") == Term(TermKind.TEXT, "red", 10.0)
    assert parse_term("2:odd.png") == Term(TermKind.IMAGE, "2:odd.png")  # the file of that name, not odd.png twice
    assert parse_term("photo: a dog").kind is TermKind.TEXT  # not a number before ':': all of it is text
    assert parse_term("photo: a dog").value == "photo: a dog"
    for bad, message in [("2x:red", "is not a number"), ("1.2.3:red", "is not a number"), ("0:red", "positive"), ("-1:red", "positive"), ("+0.0:red", "positive")]:
        with pytest.raises(InputError, match=message):
            parse_term(bad)


def test_files_that_do_not_exist_are_errors_never_texts(files):
    for missing in ("gone.jpg", "sub/gone", "./x", "GONE.PNG"):
        with pytest.raises(InputError, match=f"query image {missing} does not exist"):
            parse_term(missing)
    with pytest.raises(InputError, match="is not a file"):
        parse_term("sub")
    # --text: every plain term is a text, even one that looks like a file; @ still names a stored row.
    assert parse_term("gone.jpg", text=True) == Term(TermKind.TEXT, "gone.jpg")
    assert parse_term("car.jpg", text=True) == Term(TermKind.TEXT, "car.jpg")
    assert parse_term("2:a/b", text=True) == Term(TermKind.TEXT, "a/b", 2.0)
    assert parse_term("@4", text=True) == Term(TermKind.ROW, 4)


def test_stored_rows():
    assert parse_term("@0") == Term(TermKind.ROW, 0)
    assert parse_term("@photos/a.jpg") == Term(TermKind.ROW, os.path.abspath("photos/a.jpg"))
    with pytest.raises(InputError, match="names no stored image"):
        parse_term("@")
    assert like_query("12") == Query((Term(TermKind.ROW, 12),), "@12")
    assert like_query("@12").source == "@12"
    assert like_query("/data/x.png").terms == (Term(TermKind.ROW, "/data/x.png"),)


@pytest.mark.parametrize(
    "args, message",
    [
        ([""], "empty query"),
        (["   "], "empty query"),
        (["2:"], "empty query '2:'"),
        (["a", "+"], r"'\+' at the end"),
        (["a", "+", "-", "b"], "two operators in a row"),
        (["a", "b", "+", "c"], "need \\+ or - between them"),
        (["-", "a"], "no term to add"),
        ([], "no queries given"),
    ],
)
def test_syntax_errors(args, message):
    with pytest.raises(InputError, match=message):
        parse_arguments(args)


def test_stdin_lines(files):
    stdin = io.StringIO("car.jpg\n\n  \nred car + 2:car.jpg - at night\na - b.png\n@5\nplain text\n")
    queries = parse_arguments(["-"], stdin=stdin)
    assert [q.source for q in queries] == ["car.jpg", "red car + 2:car.jpg - at night", "a - b.png", "@5", "plain text"]
    assert kinds(queries[1]) == [("text", "red car", 1.0), ("image", "car.jpg", 2.0), ("text", "at night", -1.0)]
    assert kinds(queries[2]) == [("image", "a - b.png", 1.0)]  # a file's name is never split
    assert kinds(parse_line("x-ray + y-axis")) == [("text", "x-ray", 1.0), ("text", "y-axis", 1.0)]  # '-' inside a word is no operator
    with pytest.raises(InputError, match="no queries given"):
        parse_arguments(["-"], stdin=io.StringIO("\n\n"))


def test_like_comes_first_and_makes_arguments_optional(files):
    assert [q.source for q in parse_arguments([], like="9")] == ["@9"]
    assert [q.source for q in parse_arguments(["car.jpg"], like="9")] == ["@9", "car.jpg"]


def test_json_terms_for_servers():
    query = query_from_dicts([{"id": 12, "weight": 1.0}, {"text": "at night", "weight": -0.5}, {"path": "/x/a.jpg"}])
    assert kinds(query) == [("row", 12, 1.0), ("text", "at night", -0.5), ("image", "/x/a.jpg", 1.0)]
    assert query.source == "@12 - 0.5:at night + /x/a.jpg"
    for bad, message in [
        ([], "empty query"),
        ([{"id": 1, "text": "x"}], "exactly one of"),
        ([{"idx": 1}], "exactly one of"),
        ([{"id": "12"}], "must be an integer"),
        ([{"id": True}], "must be an integer"),
        ([{"text": ""}], "non-empty string"),
        ([{"text": "x", "weight": "2"}], "is not a number"),
        ([{"text": "x", "weight": 0}], "non-zero"),
        ([{"text": "x", "weight": float("nan")}], "non-zero finite"),
        ([{"text": "x", "weight": -1}], "no term to add"),
        ("x", "a list of terms"),
    ]:
        with pytest.raises(InputError, match=message):
            query_from_dicts(bad)
