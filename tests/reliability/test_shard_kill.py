"""The sidecar is a sharded index's single commit point: ``vecmetric index --shards 3`` killed at every
write leaves the old index or the new one on disk, never a mix, and the next run completes."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from _reliability import copy_store, draw, embed_in_process
from test_kill import assert_no_problems, kill_at_every_write

from vecmetric.index import build_index, load_index
from vecmetric.store import open_store


def layout(store_path) -> list[list[int]] | None:
    """The row ids of each shard the sidecar names (None without an index), loading every file it names."""
    folder = store_path / "_index"
    if not (folder / "index.json").exists():
        return None
    load_index(folder)  # every file the sidecar names is there and agrees with it
    side = json.loads((folder / "index.json").read_text())
    return [sorted(np.load(folder / f"ids-{e['generation']}.npy").tolist()) for e in side.get("shards", [side])]


@pytest.mark.parametrize("stage", ["written", "renamed"])
def test_a_sharded_update_killed_at_every_write_is_old_or_new(cli, big_gallery, model32, tmp_path, stage):
    images, base = tmp_path / "images", tmp_path / "base"
    shutil.copytree(big_gallery.images, images)
    embed_in_process(images, base, model32)
    build_index(open_store(base), shards=3)
    old = layout(base)
    for path in sorted(images.rglob("*.png"))[:4]:
        path.unlink()  # rows leave shard 0
    for i in range(3):
        draw(images / "class_9" / f"new_{i}.png", seed=500 + i)  # rows arrive in the smallest shard
    embed_in_process(images, base, model32)
    want = copy_store(base, tmp_path / "want")
    result = build_index(open_store(want))
    assert result.touched == [0] and not result.rebuilt  # the removed and the new rows both meet shard 0
    new = layout(want)
    assert new != old and new[1:] == old[1:]
    runs = []

    def start(env):
        store = copy_store(base, tmp_path / f"store-{len(runs)}")
        runs.append(store)
        return cli.start("index", "--store", str(store), "--quiet", env=env)

    def check(n, done):
        store = runs[-1]
        assert layout(store) in (old, new), f"write {n}: a mix of old and new shards"
        assert build_index(open_store(store)).shards == 3
        assert layout(store) == new
        assert_no_problems(store)
        shutil.rmtree(store)

    writes = kill_at_every_write(start, check, stage, f"sharded index kill points ({stage})")
    assert writes == 3  # one touched shard (index, ids), then the sidecar
    assert layout(runs[-1]) == new
