"""--paths and --json lines."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vecmetric.errors import VecmetricError
from vecmetric.index import SearchHit
from vecmetric.present import HIT_FIELDS, json_lines, path_lines


def _results():
    return [
        [SearchHit("q1.png", 1, "/data/a é.png", np.float32(0.25), "cats", np.int64(7)), SearchHit("q1.png", 2, "/data/b.png", 0.5, "dogs", 9)],
        [SearchHit("q2.png", 1, "/data/a é.png", 0.125, "cats", 7)],
    ]


def test_json_lines_fields_order_and_types():
    lines = list(json_lines(_results()))
    assert len(lines) == 3
    first = json.loads(lines[0])
    assert list(first) == list(HIT_FIELDS) == ["query", "rank", "path", "distance", "label", "id"]
    assert first == {"query": "q1.png", "rank": 1, "path": "/data/a é.png", "distance": 0.25, "label": "cats", "id": 7}
    assert "é" in lines[0]  # not escaped as \\u00e9, as the CLI prints today
    assert [json.loads(line)["query"] for line in lines] == ["q1.png", "q1.png", "q2.png"]


def test_paths_one_a_line_in_order():
    assert list(path_lines(_results())) == ["/data/a é.png", "/data/b.png", "/data/a é.png"]


def test_a_path_with_a_line_break_is_refused():
    hits = [[SearchHit("q", 1, "/data/two\nlines.png", 0.1, "x", 1)]]
    with pytest.raises(VecmetricError, match="line break"):
        list(path_lines(hits))
