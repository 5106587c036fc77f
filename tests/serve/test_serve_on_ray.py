"""``serve --engine ray``: the index's shards held in Ray actors (on a loopback Ray instance this module
starts) answer as the server that holds them itself, follow new rows, deletions and index generations."""

from __future__ import annotations

import shutil

import pytest
from serve_helpers import copy_characters, wait_for

from vecmetric.index import build_index
from vecmetric.store import embed_directory, open_store


def search(client, body):
    answer = client.post("/search", json=body)
    assert answer.status_code == 200, answer.text
    return [(hit["id"], round(hit["distance"], 5), hit["path"]) for hit in answer.json()["results"]]


def ray_actors() -> list:
    from _helpers import descendants, processes_named

    return processes_named(descendants(), "_ShardActor")


def test_shards_served_from_ray_actors_answer_as_the_local_server(ray_loopback, served_store, tmp_path, client_for):
    store = tmp_path / "store"
    shutil.copytree(served_store, store)
    build_index(open_store(store), shards=3, rebuild=True)
    local, remote = client_for(store), client_for(store, engine="ray")
    assert len(ray_actors()) == 3
    label = open_store(store).read_table(["label"]).column("label")[0].as_py()
    for body in ({"terms": [{"id": i}], "k": 5} for i in (0, 7, 13)):
        assert search(remote, body) == search(local, body)
    filtered = {"terms": [{"id": 2}], "k": 4, "label": [label]}
    assert search(remote, filtered) == search(local, filtered) and len(search(local, filtered)) == 4
    mixed = {"terms": [{"id": 1}, {"id": 9, "weight": 0.5}], "k": 6}
    assert search(remote, mixed) == search(local, mixed)


def test_the_ray_server_follows_new_rows_deletions_and_a_new_generation(ray_loopback, own_store, client_for):
    store, root = own_store, own_store.parent
    build_index(open_store(store), shards=2, rebuild=True)
    client = client_for(store, engine="ray")
    first = {"terms": [{"id": 0}], "k": 50}
    before = {hit[0] for hit in search(client, first)}

    added = copy_characters(root / "images", classes=1, per_class=3, skip=6)
    gone = sorted((root / "images").rglob("*.png"))[1]
    gone.unlink()
    embed_directory(root / "images", store, device="cpu", workers=0)  # rows added and one deleted, index not rebuilt
    rows = open_store(store).read_table(["id", "path"]).to_pylist()
    new_ids = {r["id"] for r in rows if r["path"] in {str(p) for p in added}}
    gone_id = (before | new_ids) - {r["id"] for r in rows}
    assert len(new_ids) == 3 and len(gone_id) == 1
    after = wait_for(lambda: (found := {hit[0] for hit in search(client, first)}) >= new_ids and found, what="the new rows")
    assert not after & gone_id

    old_actors = {p.pid for p in ray_actors()}
    build_index(open_store(store))  # a new generation of the shards that changed
    assert {hit[0] for hit in search(client, first)} == after  # answered by the new generation's actors
    assert {p.pid for p in ray_actors()} - old_actors
    wait_for(lambda: not ({p.pid for p in ray_actors()} & old_actors), what="the old generation's actors to stop")


def test_an_unknown_engine_is_one_error(served_store):
    from vecmetric.errors import InputError
    from vecmetric.serve import create_app

    with pytest.raises(InputError, match="--engine must be local or ray, not 'spark'"):
        create_app(served_store, engine="spark")
