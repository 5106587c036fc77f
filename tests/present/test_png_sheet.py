"""The PNG contact sheet, checked by its pixels."""

from __future__ import annotations

import pytest
from _present_helpers import COLOURS
from PIL import Image

from vecmetric.present import Sheet, SheetItem, SheetRow, png_sheet, search_sheet, write_png_sheet


def _interior(img, box, inset=3):
    """Every pixel colour inside ``box``, ``inset`` pixels from its edges."""
    left, top, right, bottom = box
    region = img.crop((left + inset, top + inset, right - inset, bottom - inset))
    return {colour for _, colour in region.getcolors(region.width * region.height)}


def test_solid_colours_appear_in_their_cells_in_order(tmp_path, solid_images, make_hits):
    paths = solid_images(5)
    results = [make_hits(paths[0], paths[1:]), make_hits(paths[4], paths[:2])]
    layout = write_png_sheet(search_sheet([paths[0], paths[4]], results), tmp_path / "s.png", size=64)
    img = Image.open(tmp_path / "s.png").convert("RGB")

    assert img.size == (layout.width, layout.height)
    expected_rows = [[0, 1, 2, 3, 4], [4, 0, 1]]  # the query's colour, then its results'
    assert [len(row) for row in layout.cells] == [5, 3]
    for boxes, colours in zip(layout.cells, expected_rows):
        for box, colour in zip(boxes, colours):
            assert box[2] - box[0] == 64 and box[3] - box[1] == 64
            assert _interior(img, box) == {COLOURS[colour]}
        lefts = [b[0] for b in boxes]
        assert lefts == sorted(lefts) and all(b - a >= 64 for a, b in zip(lefts, lefts[1:]))
    assert layout.cells[1][0][1] > layout.cells[0][0][3]  # the second row is below the first
    assert layout.rows_omitted == 0


def test_the_keeper_mark_is_drawn_around_its_cell_only(tmp_path, solid_images):
    paths = solid_images(3)
    items = [SheetItem(paths[0], ["keeper"], marked=True), SheetItem(paths[1], ["dup"]), SheetItem(paths[2], ["dup"])]
    layout = write_png_sheet(Sheet("dedup", [SheetRow("group", [], items)]), tmp_path / "s.png", size=48)
    img = Image.open(tmp_path / "s.png").convert("RGB")
    width = png_sheet.MARK_WIDTH

    def frame(box):
        left, top, right, bottom = box
        ring = [(x, top - width + d) for x in range(left - width, right + width) for d in range(width)]
        ring += [(left - width + d, y) for y in range(top, bottom) for d in range(width)]
        return {img.getpixel(p) for p in ring}

    keeper, *others = layout.cells[0]
    assert frame(keeper) == {png_sheet.MARK}
    assert _interior(img, keeper, inset=0) == {COLOURS[0]}  # the frame stays outside the thumbnail
    for box, colour in zip(others, COLOURS[1:]):
        assert png_sheet.MARK not in frame(box)
        assert _interior(img, box, inset=0) == {colour}


def test_unreadable_image_is_a_grey_box(tmp_path, solid_images):
    good = solid_images(1)[0]
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG truncated")
    row = SheetRow("r", [], [SheetItem(str(bad), ["bad"]), SheetItem(good, ["good"])])
    layout = write_png_sheet(Sheet("t", [row]), tmp_path / "s.png", size=96)
    img = Image.open(tmp_path / "s.png").convert("RGB")
    bad_box, good_box = layout.cells[0]
    pixels = _interior(img, bad_box, inset=1)
    assert png_sheet.PLACEHOLDER_GREY in pixels and len(pixels) > 1  # grey, with the reason written on it
    left, top, right, bottom = bad_box
    assert img.getpixel((right - 2, bottom - 2)) == png_sheet.PLACEHOLDER_GREY
    assert _interior(img, good_box) == {COLOURS[0]}


def test_small_images_are_centred_not_enlarged(tmp_path, solid_images):
    small = solid_images(1, size=(20, 10))[0]
    layout = write_png_sheet(Sheet("t", [SheetRow("r", [], [SheetItem(small)])]), tmp_path / "s.png", size=64)
    img = Image.open(tmp_path / "s.png").convert("RGB")
    left, top, _, _ = layout.cells[0][0]
    assert _interior(img, (left + 22, top + 27, left + 42, top + 37), inset=0) == {COLOURS[0]}
    assert img.getpixel((left + 2, top + 2)) == png_sheet.CELL


def test_canvas_is_capped_rows_and_columns_beyond_are_left_out(tmp_path, solid_images, monkeypatch):
    paths = solid_images(2)
    wide = SheetRow("wide", [SheetItem(paths[0])], [SheetItem(paths[1]) for _ in range(png_sheet.MAX_COLUMNS + 5)])
    sheet = Sheet("t", [wide] + [SheetRow(f"row {i}", [], [SheetItem(paths[0])]) for i in range(40)])
    monkeypatch.setattr(png_sheet, "MAX_CANVAS_PIXELS", 1_000_000)
    layout = write_png_sheet(sheet, tmp_path / "s.png", size=32)
    img = Image.open(tmp_path / "s.png")
    assert img.width * img.height <= 1_000_000
    assert len(layout.cells[0]) == png_sheet.MAX_COLUMNS
    assert layout.rows_omitted > 0 and len(layout.cells) + layout.rows_omitted == 41


def test_size_out_of_range_is_refused(tmp_path):
    with pytest.raises(ValueError, match="between 16 and 512"):
        write_png_sheet(Sheet("t"), tmp_path / "s.png", size=4096)
    assert not (tmp_path / "s.png").exists()
