"""Dedup's core over arrays: near pairs from a real hnswlib index, groups, keepers, thresholds.

The truth each test checks against is worked out independently: brute-force distances from
numpy and connected components by a plain graph walk, never the code under test.
"""

from __future__ import annotations

import numpy as np
import pytest

from vecmetric.dedup import Rows, auto_threshold, build_groups, check_threshold, default_threshold, near_pairs
from vecmetric.errors import InputError
from vecmetric.index import HnswIndex, IndexParams


def make_index(folder, vectors, ids, metric="cosine"):
    index = HnswIndex.create(folder, vectors.shape[1], IndexParams(metric=metric), len(ids))
    index.add(vectors, ids)
    return index


def brute_components(vectors, hashes, threshold):
    """Connected components (sets of positions, 2+ rows) by exact distance <= threshold or equal hash."""
    v = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    d = 1.0 - v @ v.T
    n = len(v)
    linked = (d <= threshold) | (np.asarray(hashes)[:, None] == np.asarray(hashes)[None, :])
    seen, out = set(), []
    for start in range(n):
        if start in seen:
            continue
        stack, comp = [start], set()
        while stack:
            i = stack.pop()
            if i in comp:
                continue
            comp.add(i)
            stack.extend(np.flatnonzero(linked[i]).tolist())
        seen |= comp
        if len(comp) > 1:
            out.append(frozenset(comp))
    return set(out)


@pytest.fixture
def planted(tmp_path):
    """200 distinct random rows; rows 0-9 get 2 near copies each (150+), rows 10-14 a byte-identical copy."""
    rng = np.random.default_rng(7)
    base = rng.normal(size=(200, 32)).astype(np.float32)
    near = np.repeat(base[:10], 2, axis=0) + rng.normal(size=(20, 32)).astype(np.float32) * 0.08
    exact = base[10:15].copy()
    vectors = np.concatenate([base, near, exact])
    n = len(vectors)
    ids = np.arange(1000, 1000 + n)  # row ids need not start at 0
    hashes = [f"h{i}" for i in range(n)]
    for k in range(5):
        hashes[220 + k] = hashes[10 + k]
    paths = [f"/photos/{i:03d}.jpg" for i in range(n)]
    # the copies are newer than their originals, except one near copy that is older
    mtimes = np.arange(n) * 10
    mtimes[200] = -5
    rows = Rows(ids, paths, np.full(n, 500), mtimes, hashes)
    expected = [frozenset({i, 200 + 2 * i, 201 + 2 * i}) for i in range(10)] + [frozenset({10 + k, 220 + k}) for k in range(5)]
    return rows, vectors, make_index(tmp_path / "idx", vectors, ids), set(expected)


def positions_of(rows, group):
    where = {int(i): p for p, i in enumerate(rows.ids)}
    return frozenset(where[m.id] for m in group.members)


def test_planted_duplicates_found_with_their_groups_and_keepers(planted):
    rows, vectors, index, expected = planted
    pairs = near_pairs(index, vectors, rows.ids, 0.1, "cosine")
    groups = build_groups(rows, vectors, "cosine", pairs, keep="oldest")
    assert {positions_of(rows, g) for g in groups} == expected
    assert expected == brute_components(vectors, rows.content_hashes, 0.1)
    keepers = {positions_of(rows, g): g.keeper.path for g in groups}
    assert keepers[frozenset({0, 200, 201})] == "/photos/200.jpg"  # the older copy
    assert keepers[frozenset({1, 202, 203})] == "/photos/001.jpg"
    assert keepers[frozenset({10, 220})] == "/photos/010.jpg"
    kinds = {positions_of(rows, g): g.kind for g in groups}
    assert kinds[frozenset({10, 220})] == "exact" and kinds[frozenset({1, 202, 203})] == "near"
    for g in groups:
        assert [m.keep for m in g.members] == [True] + [False] * (len(g.members) - 1)
        assert g.keeper.distance == 0.0
    assert [g.group for g in groups] == list(range(len(groups)))
    assert [g.keeper.path for g in groups] == sorted(g.keeper.path for g in groups)


def test_member_distances_are_exact_and_every_near_member_has_a_neighbour_within_threshold(planted):
    rows, vectors, index, _ = planted
    threshold = 0.1
    groups = build_groups(rows, vectors, "cosine", near_pairs(index, vectors, rows.ids, threshold, "cosine"))
    v = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    where = {int(i): p for p, i in enumerate(rows.ids)}
    for g in groups:
        pos = [where[m.id] for m in g.members]
        d = 1.0 - v[pos] @ v[pos].T
        np.fill_diagonal(d, np.inf)
        if g.kind == "near":
            assert (d.min(axis=1) <= threshold).all()
        for m, p in zip(g.members, pos):
            assert m.distance == pytest.approx(max(0.0, 1.0 - float(v[pos[0]] @ v[p])), abs=1e-5)


def test_byte_identical_files_are_grouped_even_at_threshold_zero(planted):
    rows, vectors, index, _ = planted
    groups = build_groups(rows, vectors, "cosine", near_pairs(index, vectors, rows.ids, 0.0, "cosine"))
    assert {positions_of(rows, g) for g in groups} == {frozenset({10 + k, 220 + k}) for k in range(5)}
    assert {g.kind for g in groups} == {"exact"}
    assert all(m.distance == 0.0 for g in groups for m in g.members)


def test_an_exact_set_joined_by_a_near_pair_becomes_one_near_group(tmp_path):
    rng = np.random.default_rng(1)
    a = rng.normal(size=32).astype(np.float32)
    vectors = np.stack([a, a, a + 0.05 * rng.normal(size=32).astype(np.float32), rng.normal(size=32).astype(np.float32)])
    rows = Rows([0, 1, 2, 3], ["/p/a.jpg", "/p/a-copy.jpg", "/p/a-small.jpg", "/p/other.jpg"], [9, 9, 3, 5], [0, 1, 2, 3], ["x", "x", "y", "z"])
    index = make_index(tmp_path / "idx", vectors, rows.ids)
    groups = build_groups(rows, vectors, "cosine", near_pairs(index, vectors, rows.ids, 0.05, "cosine"))
    assert len(groups) == 1 and groups[0].kind == "near"
    assert [m.path for m in groups[0].members][:2] == ["/p/a.jpg", "/p/a-copy.jpg"]  # keeper, then its identical copy at 0.0
    assert groups[0].members[1].distance == 0.0 and groups[0].members[2].distance > 0


@pytest.mark.parametrize(
    "keep, expected",
    [("oldest", "/b/long-name.jpg"), ("newest", "/a/x.jpg"), ("largest", "/c/y.jpg"), ("shortest-path", "/a/x.jpg")],
)
def test_keep_policies_and_their_tie_rule(tmp_path, keep, expected):
    rng = np.random.default_rng(2)
    a = rng.normal(size=16).astype(np.float32)
    vectors = np.stack([a, a + 0.01, a - 0.01, a + 0.02])
    # mtimes: the two oldest tie (the shorter path wins); sizes: two tie at the top, so does the path length
    rows = Rows([0, 1, 2, 3], ["/a/x.jpg", "/b/long-name.jpg", "/c/y.jpg", "/bb/long-name.jpg"], [5, 7, 9, 9], [30, 10, 20, 10], ["1", "2", "3", "4"])
    groups = build_groups(rows, vectors, "cosine", near_pairs(make_index(tmp_path / "idx", vectors, rows.ids), vectors, rows.ids, 0.1, "cosine"), keep=keep)
    assert groups[0].keeper.path == expected


def test_unknown_keep_policy_is_refused(planted):
    rows, vectors, _, _ = planted
    with pytest.raises(InputError, match="keep policy"):
        build_groups(rows, vectors, "cosine", None, keep="best")


def test_range_search_grows_k_beyond_the_first_ask_and_reports_the_cap(tmp_path):
    rng = np.random.default_rng(3)
    centre = rng.normal(size=32).astype(np.float32)
    blob = centre + 0.02 * rng.normal(size=(60, 32)).astype(np.float32)  # 60 rows, all within the threshold of each other
    vectors = np.concatenate([blob, rng.normal(size=(100, 32)).astype(np.float32)])
    ids = np.arange(len(vectors))
    index = make_index(tmp_path / "idx", vectors, ids)
    full = near_pairs(index, vectors, ids, 0.05, "cosine", k=4, max_k=128)
    assert len(full) == 60 * 59 // 2 and full.capped == 0
    assert set(full.left.tolist()) | set(full.right.tolist()) == set(range(60))
    capped = near_pairs(index, vectors, ids, 0.05, "cosine", k=4, max_k=8)
    assert capped.capped == 60 and len(capped) < len(full)
    rows = Rows(ids, [f"/{i}" for i in ids], np.ones(len(ids)), ids, [str(i) for i in ids])
    assert [len(g.members) for g in build_groups(rows, vectors, "cosine", capped)] == [60]  # still one group


def test_against_finds_planted_leaks_and_keeps_the_reference_rows(tmp_path):
    rng = np.random.default_rng(4)
    train = rng.normal(size=(150, 32)).astype(np.float32)
    test = rng.normal(size=(40, 32)).astype(np.float32)
    test[:5] = train[[3, 7, 11, 19, 23]] + 0.03 * rng.normal(size=(5, 32)).astype(np.float32)
    test[5] = train[40]  # byte-identical file in both stores
    train_hashes = [f"tr{i}" for i in range(150)]
    test_hashes = [f"te{i}" for i in range(40)]
    test_hashes[5] = train_hashes[40]
    train_index = make_index(tmp_path / "train", train, np.arange(150))
    pairs = near_pairs(train_index, test, np.arange(40), 0.05, "cosine", data_vectors=train, data_ids=np.arange(150))
    assert set(zip(pairs.left.tolist(), pairs.right.tolist())) == {(0, 3), (1, 7), (2, 11), (3, 19), (4, 23), (5, 40)}
    mine = Rows(np.arange(40), [f"/test/{i}.jpg" for i in range(40)], np.ones(40), np.zeros(40), test_hashes, side=np.zeros(40))
    other = Rows(np.arange(150), [f"/train/{i}.jpg" for i in range(150)], np.ones(150), np.zeros(150), train_hashes, side=np.ones(150))
    groups = build_groups(Rows.concat(mine, other), np.concatenate([test, train]), "cosine", pairs, against=True)
    assert {(g.members[1].path, g.keeper.path) for g in groups} == {
        ("/test/0.jpg", "/train/3.jpg"), ("/test/1.jpg", "/train/7.jpg"), ("/test/2.jpg", "/train/11.jpg"),
        ("/test/3.jpg", "/train/19.jpg"), ("/test/4.jpg", "/train/23.jpg"), ("/test/5.jpg", "/train/40.jpg"),
    }
    assert all(m.keep == (m.side == 1) for g in groups for m in g.members)
    assert all(type(m.keep) is bool for g in groups for m in g.members)  # json.dumps refuses numpy's bool
    assert {g.kind for g in groups if g.keeper.path == "/train/40.jpg"} == {"exact"}


def test_group_dict_is_the_json_line_format(planted):
    rows, vectors, index, _ = planted
    group = build_groups(rows, vectors, "cosine", near_pairs(index, vectors, rows.ids, 0.1, "cosine"))[0]
    line = group.to_dict()
    assert list(line) == ["group", "kind", "files"]
    assert list(line["files"][0]) == ["path", "id", "distance", "keep"]
    assert [r["path"] for r in group.to_rows()] == [f["path"] for f in line["files"]]


@pytest.mark.parametrize("value, metric", [("abc", "cosine"), ("nan", "cosine"), (-0.1, "cosine"), (2.5, "cosine"), (-1, "l2"), (None, "l2")])
def test_bad_thresholds_are_refused(value, metric):
    with pytest.raises(InputError):
        check_threshold(value, metric)


def test_good_thresholds_and_the_default():
    assert check_threshold("0.2", "cosine") == 0.2
    assert check_threshold(-0.5, "ip") == -0.5  # 1 - inner product goes below 0 for long vectors
    assert default_threshold({"spec": "default"}, "cosine") == pytest.approx(0.25)
    assert default_threshold({"spec": "timm:resnet50"}, "cosine") is None
    assert default_threshold({"spec": "default"}, "ip") is None


def test_auto_threshold_finds_the_valley_between_copies_and_distinct_rows(tmp_path):
    rng = np.random.default_rng(5)
    distinct = rng.normal(size=(400, 32)).astype(np.float32)
    copies = distinct[:150] + rng.uniform(0.02, 0.12, size=(150, 1)).astype(np.float32) * rng.normal(size=(150, 32)).astype(np.float32)
    vectors = np.concatenate([distinct, copies])
    ids = np.arange(len(vectors))
    hashes = [str(i) for i in ids]
    index = make_index(tmp_path / "idx", vectors, ids)
    v = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    copy_d = 1 - (v[:150] * v[400:]).sum(axis=1)
    d = 1 - v[:400] @ v[:400].T
    np.fill_diagonal(d, np.inf)
    auto = auto_threshold(index, vectors, ids, hashes, "cosine")
    assert auto.method == "valley"
    assert copy_d.max() < auto.threshold < d.min()
    alone = auto_threshold(make_index(tmp_path / "alone", distinct, ids[:400]), distinct, ids[:400], hashes[:400], "cosine")
    assert alone.method == "fallback" and alone.threshold < d.min()
    with pytest.raises(InputError, match="explicit"):
        auto_threshold(index, vectors, ids, hashes, "ip")


def test_a_store_whose_rows_are_all_copies_is_one_group_and_not_capped(tmp_path):
    rng = np.random.default_rng(6)
    vectors = rng.normal(size=32).astype(np.float32) + 0.01 * rng.normal(size=(5, 32)).astype(np.float32)
    ids = np.arange(5)
    pairs = near_pairs(make_index(tmp_path / "idx", vectors, ids), vectors, ids, 0.1, "cosine", k=2, max_k=5)
    assert len(pairs) == 10 and pairs.capped == 0


def test_find_duplicates_and_find_leaks_compose_the_steps(planted, tmp_path):
    from vecmetric.dedup import find_duplicates, find_leaks

    rows, vectors, index, expected = planted
    found = find_duplicates(index, rows, vectors, "0.1")
    assert found.threshold == 0.1 and {positions_of(rows, g) for g in found.groups} == expected
    with pytest.raises(InputError):
        find_duplicates(index, rows, vectors, -1)
    # this store against itself minus the copies: every copy is a leak of its original
    originals = Rows(rows.ids[:200], rows.paths[:200], rows.sizes[:200], rows.mtime_ns[:200], rows.content_hashes[:200])
    copies = Rows(rows.ids[200:], rows.paths[200:], rows.sizes[200:], rows.mtime_ns[200:], rows.content_hashes[200:])
    leaks = find_leaks(make_index(tmp_path / "orig", vectors[:200], rows.ids[:200]), copies, vectors[200:], originals, vectors[:200], 0.1)
    assert {(g.keeper.path, frozenset(m.path for m in g.members[1:])) for g in leaks.groups} == {
        (f"/photos/{i:03d}.jpg", frozenset({f"/photos/{200 + 2 * i:03d}.jpg", f"/photos/{201 + 2 * i:03d}.jpg"})) for i in range(10)
    } | {(f"/photos/{10 + k:03d}.jpg", frozenset({f"/photos/{220 + k:03d}.jpg"})) for k in range(5)}
