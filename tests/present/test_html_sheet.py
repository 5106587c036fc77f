"""The HTML contact sheet, read back with html.parser: results, links, data URIs, escaping."""

from __future__ import annotations

import base64
import io
import urllib.parse
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from vecmetric.present import Sheet, SheetItem, SheetRow, search_sheet, write_html_sheet


class _Figures(HTMLParser):
    """Collects every <figure>: its class, link, image src and caption lines; and every tag seen."""

    def __init__(self):
        super().__init__()
        self.figures, self.tags, self.urls, self.headings = [], [], [], []
        self._figure = self._span = self._heading = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        self.urls += [attrs[k] for k in ("href", "src") if k in attrs]
        if tag == "figure":
            self._figure = {"class": attrs.get("class", ""), "href": None, "src": None, "caption": [], "missing": None}
            self.figures.append(self._figure)
        elif tag == "a" and self._figure is not None:
            self._figure["href"] = attrs["href"]
        elif tag == "img" and self._figure is not None:
            self._figure["src"] = attrs["src"]
        elif tag == "span":
            self._span = []
        elif tag == "div" and "missing" in attrs.get("class", ""):
            self._figure["missing"] = ""
        elif tag in ("h1", "h2"):
            self._heading = []

    def handle_endtag(self, tag):
        if tag == "figure":
            self._figure = None
        elif tag == "span" and self._span is not None:
            self._figure["caption"].append("".join(self._span))
            self._span = None
        elif tag in ("h1", "h2") and self._heading is not None:
            self.headings.append("".join(self._heading))
            self._heading = None

    def handle_data(self, data):
        if self._span is not None:
            self._span.append(data)
        elif self._heading is not None:
            self._heading.append(data)
        elif self._figure is not None and self._figure["missing"] is not None:
            self._figure["missing"] += data


def _parse(path) -> _Figures:
    parser = _Figures()
    parser.feed(Path(path).read_text(encoding="utf-8"))
    return parser


def _decode_data_uri(uri: str):
    header, _, payload = uri.partition(",")
    assert header == "data:image/jpeg;base64"
    return Image.open(io.BytesIO(base64.b64decode(payload)))


def test_every_result_with_rank_distance_label_link_and_thumbnail(tmp_path, solid_images, make_hits):
    paths = solid_images(4, size=(300, 200))
    results = [make_hits(paths[0], paths[1:]), make_hits(paths[1], paths[2:])]
    write_html_sheet(search_sheet(paths[:2], results), tmp_path / "sheet.html", size=120)
    parsed = _parse(tmp_path / "sheet.html")

    assert parsed.headings == ["vecmetric search", paths[0], paths[1]]
    figures = parsed.figures
    assert [f["class"] for f in figures] == ["query", "item", "item", "item", "query", "item", "item"]
    expected = [h for hits in results for h in [None, *hits]]
    queries = iter(paths[:2])
    for figure, hit in zip(figures, expected):
        path = next(queries) if hit is None else hit.path
        assert figure["href"] == Path(path).as_uri()
        thumb = _decode_data_uri(figure["src"])
        assert thumb.size == (120, 80)  # 300 x 200 shrunk to fit 120
        if hit is None:
            assert figure["caption"] == ["query"]
        else:
            assert figure["caption"] == [f"#{hit.rank}  {hit.distance:.4f}", hit.label]
    # Each thumbnail shows its own image: the colour at its centre is its source's.
    for figure, hit in zip(figures[1:4], results[0]):
        source = Image.open(hit.path).getpixel((0, 0))
        assert _decode_data_uri(figure["src"]).getpixel((60, 40)) == pytest.approx(source, abs=4)


def test_self_contained_no_request_leaves_the_file(tmp_path, solid_images, make_hits):
    paths = solid_images(3)
    write_html_sheet(search_sheet(paths[:1], [make_hits(paths[0], paths)]), tmp_path / "s.html")
    parsed = _parse(tmp_path / "s.html")
    assert "script" not in parsed.tags and "link" not in parsed.tags
    assert all(u.startswith(("data:image/", "file://")) for u in parsed.urls), parsed.urls
    text = (tmp_path / "s.html").read_text(encoding="utf-8")
    assert "default-src 'none'" in text and "http://" not in text and "https://" not in text


def test_hostile_path_text_is_escaped(tmp_path):
    folder = tmp_path / 'evil <b>&amp; "quoted" \'single\''
    folder.mkdir()
    hostile = folder / "<script>alert(1)<script> café 漢字 & x.png"  # no "/": it would be a folder
    Image.new("RGB", (50, 50), (9, 9, 9)).save(hostile)
    label = '</span><img src=x onerror="alert(1)">'
    item = SheetItem(str(hostile), ["#1  0.5000", label])
    sheet = Sheet('Title <i>not italic</i> & "q"', [SheetRow(str(hostile), [], [item])])
    write_html_sheet(sheet, tmp_path / "s.html", size=32)
    parsed = _parse(tmp_path / "s.html")

    assert parsed.tags.count("script") == 0 and parsed.tags.count("b") == 0 and parsed.tags.count("i") == 0
    assert parsed.tags.count("img") == 1  # only the thumbnail, not the label's
    assert parsed.headings == ['Title <i>not italic</i> & "q"', str(hostile)]
    (figure,) = parsed.figures
    assert figure["caption"] == ["#1  0.5000", label]
    assert urllib.parse.unquote(urllib.parse.urlparse(figure["href"]).path) == str(hostile)
    assert _decode_data_uri(figure["src"]).size == (32, 32)


def test_unreadable_images_become_grey_boxes_with_the_reason(tmp_path, solid_images):
    good = solid_images(1)[0]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    missing = tmp_path / "gone.png"
    items = [SheetItem(good, ["ok"]), SheetItem(str(broken), ["broken"]), SheetItem(str(missing), ["gone"])]
    write_html_sheet(Sheet("t", [SheetRow("r", [], items)]), tmp_path / "s.html")
    figures = _parse(tmp_path / "s.html").figures
    assert figures[0]["src"] and figures[0]["missing"] is None
    assert figures[1]["src"] is None and "cannot show:" in figures[1]["missing"] and "image" in figures[1]["missing"]
    assert figures[2]["src"] is None and "cannot read the file" in figures[2]["missing"]


def test_marked_items_and_text_queries(tmp_path, solid_images):
    paths = solid_images(2)
    row = SheetRow("group 1", [], [SheetItem(paths[0], ["keeper"], marked=True), SheetItem(paths[1], ["duplicate"])])
    text_row = search_sheet(["a red bicycle"], [[]], text=True).rows[0]
    write_html_sheet(Sheet("dedup", [row, text_row]), tmp_path / "s.html")
    figures = _parse(tmp_path / "s.html").figures
    assert [f["class"] for f in figures] == ["item marked", "item", "query"]
    assert figures[2]["href"] is None and figures[2]["caption"] == ["text query", "a red bicycle"]


def test_written_atomically_no_temporaries_left(tmp_path, solid_images):
    paths = solid_images(1)
    target = tmp_path / "out" / "sheet.html"
    target.parent.mkdir()
    write_html_sheet(Sheet("t", [SheetRow("r", [], [SheetItem(paths[0])])]), target)
    assert [p.name for p in target.parent.iterdir()] == ["sheet.html"]
