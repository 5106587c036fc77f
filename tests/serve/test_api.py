"""Every endpoint of the API through FastAPI's TestClient, against answers worked out without the server:
exact search with numpy over the stored vectors, the files on disk, ``store_info``."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from serve_helpers import wait_for

from vecmetric.index import exact_search
from vecmetric.present import HIT_FIELDS
from vecmetric.query import SearchFilter, combine
from vecmetric.store import embeddings_to_numpy, open_store


def stored(store):
    """``(ids, vectors, paths, labels)`` of every row, straight from the Parquet parts."""
    table = open_store(store).read_table(["id", "embedding", "path", "label"])
    return (
        np.asarray(table.column("id").to_pylist()),
        embeddings_to_numpy(table.column("embedding")),
        table.column("path").to_pylist(),
        table.column("label").to_pylist(),
    )


def exact_ids(store, vector, k, exclude=(), allow=None):
    ids, vectors, paths, labels = stored(store)
    keep = ~np.isin(ids, list(exclude))
    if allow is not None:
        keep &= np.array([allow(p, l) for p, l in zip(paths, labels)])
    found, dists = exact_search(vectors[keep], vector[None], k, metric="cosine", ids=ids[keep])
    return found[0].tolist(), dists[0].tolist()


def vector_of(store, row_id):
    ids, vectors, _, _ = stored(store)
    return vectors[list(ids).index(row_id)]


def test_search_by_id_answers_as_exact_search(served_store, client_for):
    client = client_for(served_store)
    ids, _, paths, labels = stored(served_store)
    row = int(ids[7])
    answer = client.post("/search", json={"terms": [{"id": row}], "k": 6})
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [list(r) for r in results] == [list(HIT_FIELDS)] * 6  # the fields of search --json, in order
    want, dists = exact_ids(served_store, vector_of(served_store, row), 6, exclude=[row])  # its own image is left out
    assert [r["id"] for r in results] == want
    assert [r["rank"] for r in results] == [1, 2, 3, 4, 5, 6]
    assert [r["distance"] for r in results] == pytest.approx(dists, abs=1e-5)
    by_id = dict(zip(ids.tolist(), zip(paths, labels)))
    assert all((r["path"], r["label"]) == by_id[r["id"]] and r["query"] == f"@{row}" for r in results)


def test_algebra_and_filters(served_store, client_for):
    client = client_for(served_store)
    ids, _, paths, labels = stored(served_store)
    a, b = int(ids[0]), int(ids[12])
    body = {"terms": [{"id": a}, {"id": b, "weight": -0.5}], "k": 4, "label": [labels[3], labels[17]], "path": "*/*_0*.png"}
    answer = client.post("/search", json=body)
    assert answer.status_code == 200, answer.text
    query = combine(np.stack([vector_of(served_store, a), vector_of(served_store, b)]), [1.0, -0.5], "cosine")
    flt = SearchFilter(labels=tuple(body["label"]), path=body["path"])
    want, _ = exact_ids(served_store, query, 4, exclude=[a, b], allow=lambda p, lab: bool(flt.row_mask([lab], [p])[0]))
    results = answer.json()["results"]
    assert [r["id"] for r in results] == want and len(want) == 4
    assert {r["query"] for r in results} == {f"@{a} - 0.5:@{b}"}
    near = client.post("/search", json={"terms": [{"id": a}], "k": 10, "max_distance": results[1]["distance"]}).json()["results"]
    assert near and all(r["distance"] <= results[1]["distance"] for r in near)


def test_search_image_upload_finds_the_same_image_and_combines_with_terms(served_store, client_for):
    from PIL import Image

    client = client_for(served_store)
    ids, _, paths, _ = stored(served_store)
    target = paths[5]
    with open(target, "rb") as fh:
        answer = client.post("/search/image", files={"image": ("q.png", fh, "image/png")}, data={"k": "3"})
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert results[0]["path"] == target and results[0]["distance"] < 1e-4 and results[0]["query"] == "upload"
    jpeg = io.BytesIO()
    Image.open(target).convert("RGB").resize((640, 480)).save(jpeg, "JPEG")
    other = int(ids[15])
    combined = client.post(
        "/search/image",
        files={"image": ("q.jpg", jpeg.getvalue(), "image/jpeg")},
        data={"k": "3", "weight": "2", "terms": json.dumps([{"id": other, "weight": -1}]), "label": [paths[5].split("/")[-2]]},
    )
    assert combined.status_code == 200, combined.text
    hits = combined.json()["results"]
    assert {h["query"] for h in hits} == {f"2:upload - @{other}"} and all(h["label"] == paths[5].split("/")[-2] for h in hits)


def test_images_and_thumbnails_by_id_only(served_store, client_for):
    from PIL import Image

    client = client_for(served_store)
    ids, _, paths, _ = stored(served_store)
    row, path = int(ids[3]), paths[3]
    original = client.get(f"/images/{row}")
    assert original.status_code == 200 and original.headers["content-type"] == "image/png"
    assert original.content == open(path, "rb").read()
    for size, fmt, mime in ((48, "jpeg", "image/jpeg"), (64, "png", "image/png")):
        thumb = client.get(f"/thumbs/{row}", params={"size": size, "format": fmt})
        assert thumb.status_code == 200 and thumb.headers["content-type"] == mime
        img = Image.open(io.BytesIO(thumb.content))
        assert max(img.size) == size and img.format == fmt.upper()
    assert client.get("/thumbs/999999").status_code == 404
    assert client.get(f"/thumbs/{row}", params={"size": 5000}).status_code == 422


def test_thumbnails_are_cached_outside_a_read_only_store(served_store, client_for, monkeypatch, tmp_path):
    from vecmetric.present import DecodeGuard

    before = sorted((p.relative_to(served_store), p.stat().st_mtime_ns) for p in served_store.rglob("*"))
    monkeypatch.setenv("VECMETRIC_CACHE_DIR", str(tmp_path / "cache"))
    client = client_for(served_store, thumbnails_on_disk=True)
    made = []
    real = DecodeGuard.thumbnail
    monkeypatch.setattr(DecodeGuard, "thumbnail", lambda self, *a: made.append(a[1:]) or real(self, *a))
    row = int(stored(served_store)[0][2])
    first = client.get(f"/thumbs/{row}?size=40")
    second = client.get(f"/thumbs/{row}?size=40")
    assert first.status_code == second.status_code == 200 and first.content == second.content
    assert made == [(40, "JPEG")]  # made once, then served from the cache
    assert list((tmp_path / "cache").rglob("*.jpg"))  # the per-user cache, keyed by store id and content hash
    assert sorted((p.relative_to(served_store), p.stat().st_mtime_ns) for p in served_store.rglob("*")) == before


def test_changed_and_deleted_files_are_not_served(own_store, client_for):
    import os
    import shutil

    client = client_for(own_store)
    ids, _, paths, _ = stored(own_store)
    touched, changed, deleted = paths[0], paths[1], paths[2]
    os.utime(touched, ns=(1, 1))  # same content, new mtime: still the image that was embedded
    shutil.copy(paths[-1], changed)
    os.unlink(deleted)
    assert client.get(f"/images/{ids[0]}").content == open(touched, "rb").read()
    assert client.get(f"/thumbs/{ids[0]}").status_code == 200
    for row, word in ((ids[1], "changed"), (ids[2], "deleted")):
        for url in (f"/images/{row}", f"/thumbs/{row}"):
            answer = client.get(url)
            assert answer.status_code == 410 and word in answer.json()["error"] and answer.json()["hint"]


def test_info_health_schema_and_page(served_store, client_for):
    from vecmetric.info import store_info

    client = client_for(served_store)
    assert client.get("/healthz").json() == {"ok": True}
    info = client.get("/info").json()
    want = store_info(served_store)
    assert {k: v for k, v in info.items() if k != "updated_at"} == {k: v for k, v in json.loads(json.dumps(want)).items() if k != "updated_at"}
    schema = client.get("/openapi.json").json()
    assert {"/search", "/search/image", "/images/{id}", "/thumbs/{id}", "/info", "/healthz"} <= set(schema["paths"])
    assert schema["paths"]["/search"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/SearchIn")
    assert "ErrorOut" in schema["components"]["schemas"]
    assert client.get("/docs").status_code == 404 and client.get("/redoc").status_code == 404  # their assets come from a CDN
    page = client.get("/")
    assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("/static/app.js", "/static/app.css"):
        assert asset in page.text and client.get(asset).status_code == 200
    for text in (page.text, client.get("/static/app.js").text, client.get("/static/app.css").text):
        assert "http://" not in text and "https://" not in text and "//cdn" not in text  # works offline


def test_health_says_not_ok_until_the_index_is_loaded(served_store):
    from fastapi.testclient import TestClient

    from vecmetric.serve import create_app

    with TestClient(create_app(served_store, warm_up=False, thumbnails_on_disk=False), base_url="http://127.0.0.1") as client:
        before = client.get("/healthz")
        assert before.status_code == 503 and before.json() == {"ok": False}
        assert client.post("/search", json={"terms": [{"id": 0}], "k": 1}).status_code == 200
        wait_for(lambda: client.get("/healthz").status_code == 200, what="/healthz")
