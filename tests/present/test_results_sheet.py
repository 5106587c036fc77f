"""results_sheet: a cell per query term (image, stored image or text, with its weight), then the hits."""

from __future__ import annotations

from types import SimpleNamespace

from vecmetric.present import hits_table, results_sheet


class Result(list):
    """A QueryResult stand-in: a list of hits with ``source`` and ``terms``."""

    def __init__(self, source, terms, hits):
        super().__init__(hits)
        self.source, self.terms = source, terms


def term(weight=1.0, path=None, text=None, row_id=None, embedded=True):
    return SimpleNamespace(weight=weight, path=path, text=text, row_id=row_id, embedded=embedded)


def hit(rank, path, label="cats"):
    return SimpleNamespace(query="q", rank=rank, path=path, distance=0.125 * rank, label=label, id=rank)


def test_cells_per_term_and_hit():
    results = [
        Result("a.jpg", [term(path="/p/a.jpg")], [hit(1, "/p/x.jpg"), hit(2, "/p/y.jpg", label=None)]),
        Result("2:red car + @7 - b.jpg", [term(2.0, text="red car"), term(1.0, "/p/s.jpg", row_id=7, embedded=False), term(-1.0, "/q/b.jpg")], [hit(1, "/p/z.jpg")]),
    ]
    sheet = results_sheet(results, title="t")
    assert sheet.title == "t" and [row.title for row in sheet.rows] == ["a.jpg", "2:red car + @7 - b.jpg"]
    single, expression = sheet.rows
    assert [(c.path, c.caption) for c in single.query_images] == [("/p/a.jpg", ["query"])]
    assert [(i.path, i.caption) for i in single.items] == [("/p/x.jpg", ["#1  0.1250", "cats"]), ("/p/y.jpg", ["#2  0.2500", ""])]
    assert [(c.path, c.caption, c.href()) for c in expression.query_images] == [
        (None, ["+ 2x", "text: red car"], ""),
        ("/p/s.jpg", ["+ 1x", "stored @7"], "file:///p/s.jpg"),
        ("/q/b.jpg", ["- 1x"], "file:///q/b.jpg"),
    ]


def test_table_rows():
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(hits_table("a.jpg", [hit(1, "/p/x.jpg"), hit(2, "/p/y.jpg", label=None)]))
    text = console.export_text()
    assert text.splitlines()[0].strip() == "a.jpg"
    assert "1 │   0.1250 │ cats  │ /p/x.jpg" in text and "2 │   0.2500 │       │ /p/y.jpg" in text
