"""Hostile input gets a 4xx answer with a one-line JSON error, and the server keeps serving."""

from __future__ import annotations

import io
import json
import struct
import zlib

import pytest

from vecmetric.serve import ServeLimits


def png_with_header(width: int, height: int, payload: bytes = b"") -> bytes:
    """A PNG whose header claims ``width`` x ``height`` (8-bit greyscale), with ``payload`` as its pixel data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(payload, 9)) + chunk(b"IEND", b"")


def jpeg(size=(64, 48)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, (120, 30, 200)).save(out, "JPEG")
    return out.getvalue()


def assert_error(answer, status: int, *needles: str) -> dict:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert set(body) == {"error", "hint"} and body["error"] and "\n" not in body["error"], body
    for needle in needles:
        assert needle in body["error"], body
    return body


def assert_still_serving(client, row: int = 0) -> None:
    assert client.get("/healthz").json() == {"ok": True}
    answer = client.post("/search", json={"terms": [{"id": row}], "k": 3})
    assert answer.status_code == 200 and len(answer.json()["results"]) == 3


WIDE = 12_000
BOMB = png_with_header(WIDE, 8_000, b"\0" * ((WIDE + 1) * 8_000))  # 96 Mpixels of zeros in ~100 kB


@pytest.mark.parametrize(
    "data, needle",
    [
        (b"just some text, not a picture", "not an image"),
        (b"", "empty"),
        (jpeg()[:200], "truncated"),
        (png_with_header(100_000, 100_000), "decompression bomb"),
        (BOMB, "decompression bomb"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "not an image"),
    ],
    ids=["text", "empty", "truncated-jpeg", "bomb-header", "bomb-zeros", "png-signature-only"],
)
def test_unusable_uploads(served_store, client_for, data, needle):
    client = client_for(served_store)
    body = assert_error(client.post("/search/image", files={"image": ("x.jpg", data, "image/jpeg")}), 400, "cannot use the uploaded image", needle)
    assert body["hint"]
    assert_still_serving(client)


def test_caps_on_bytes_and_pixels(served_store, client_for):
    client = client_for(served_store, limits=ServeLimits(upload_bytes=20_000, max_pixels=50 * 50))
    assert_error(client.post("/search/image", files={"image": ("a.jpg", jpeg((40, 40)) + b"\0" * 30_000, "image/jpeg")}), 413, "20000 byte limit")
    huge = client.post("/search/image", files={"image": ("a.jpg", b"\xff" * 3_000_000, "image/jpeg")})
    assert_error(huge, 413, "byte limit")  # refused from its Content-Length, before the body is read
    assert_error(client.post("/search/image", files={"image": ("a.jpg", jpeg((60, 60)), "image/jpeg")}), 400, "decompression bomb")
    assert client.post("/search/image", files={"image": ("a.jpg", jpeg((50, 50)), "image/jpeg")}).status_code == 200
    assert_error(client.post("/search", content=b"[" * 2_000_000, headers={"content-type": "application/json"}), 413)
    assert_still_serving(client)


@pytest.mark.parametrize(
    "body, status, needle",
    [
        ({"terms": [{"id": 0}], "k": 0}, 422, "k:"),
        ({"terms": [{"id": 0}], "k": 1001}, 422, "k:"),
        ({"terms": [{"id": 0}], "k": "ten"}, 422, "k:"),
        ({"terms": [{"id": 0}], "ef": 0}, 422, "ef:"),
        ({"terms": [{"id": 0}], "ef": 100_000}, 422, "ef:"),
        ({"terms": {"id": 0}}, 422, "terms"),
        ({"terms": []}, 422, "terms"),
        ({"terms": [{}]}, 400, "exactly one of id, path, text"),
        ({"terms": [{"id": 0, "text": "x"}]}, 400, "exactly one of id, path, text"),
        ({"terms": [{"id": "0"}]}, 422, "terms.0.id"),
        ({"terms": [{"id": True}]}, 422, "terms.0.id"),
        ({"terms": [{"id": -1}]}, 422, "terms.0.id"),
        ({"terms": [{"id": 2**70}]}, 422, "terms.0.id"),
        ({"terms": [{"id": 0, "weight": 0}]}, 400, "non-zero"),
        ({"terms": [{"id": 0, "weight": "NaN"}]}, 422, "weight"),
        ({"terms": [{"id": 0, "weight": -1}]}, 400, "no term to add"),
        ({"terms": [{"id": 987654}]}, 400, "no stored image has id 987654"),
        ({"terms": [{"id": 0, "colour": "red"}]}, 422, "colour"),
        ({"terms": [{"text": ""}]}, 422, "text"),
        ({"terms": [{"text": "x" * 5000}]}, 422, "text"),
        ({"terms": [{"id": 0}], "max_distance": "far"}, 422, "max_distance"),
        ({"terms": [{"id": 0}], "label": "cats"}, 422, "label"),
        ({"terms": [{"id": 0}], "surprise": 1}, 422, "surprise"),
        ({"terms": [{"path": "/etc/passwd"}]}, 422, "never a file path"),
        ({"terms": [{"path": "../../../etc/passwd"}]}, 422, "never a file path"),
    ],
)
def test_malformed_queries(served_store, client_for, body, status, needle):
    client = client_for(served_store)
    assert_error(client.post("/search", json=body), status, needle)


def test_malformed_form_fields(served_store, client_for):
    client = client_for(served_store)
    image = {"image": ("q.jpg", jpeg(), "image/jpeg")}
    assert_error(client.post("/search/image", files=image, data={"k": "0"}), 422, "k:")
    assert_error(client.post("/search/image", files=image, data={"weight": "0"}), 400, "non-zero")
    assert_error(client.post("/search/image", files=image, data={"terms": "not json"}), 400, "JSON list")
    assert_error(client.post("/search/image", files=image, data={"terms": json.dumps([{"path": "/etc/passwd"}])}), 422, "never a file path")
    assert_error(client.post("/search/image", files=image, data={"terms": json.dumps({"id": 0})}), 422, "terms")
    assert_error(client.post("/search/image", data={"k": "3"}), 422, "image")
    assert_error(client.post("/search/image", json={"terms": [{"id": 0}]}), 422, "image")
    assert_still_serving(client)


def test_path_traversal_in_every_parameter(served_store, client_for, tmp_path):
    client = client_for(served_store)
    for url in (
        "/images/../../etc/passwd",
        "/images/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/thumbs/..%2F..%2Fetc%2Fpasswd",
        "/static/../_app.py",
        "/static/%2e%2e/_app.py",
        "/static/..%2f_app.py",
    ):
        answer = client.get(url)
        assert answer.status_code == 404, (url, answer.status_code)
        assert "import" not in answer.text and "root:" not in answer.text
    assert_error(client.get("/images/-1"), 422, "id")
    assert_error(client.get("/thumbs/abc"), 422, "id")
    assert_error(client.get("/thumbs/0", params={"format": "../../x"}), 422, "format")
    for flt in ({"path": "/etc/*"}, {"path": "../../../etc/*"}, {"label": ["../../etc"]}):
        answer = client.post("/search", json={"terms": [{"id": 0}], "k": 5, **flt})
        assert answer.status_code == 200 and answer.json() == {"results": []}  # filters match stored rows, nothing else
    evil = tmp_path / "evil.png"
    uploaded = client.post("/search/image", files={"image": (f"../../../../{evil}", jpeg(), "image/jpeg")}, data={"k": "2"})
    assert uploaded.status_code == 200 and not evil.exists()  # the upload's file name is never used
    assert_still_serving(client)


def test_unknown_routes_and_methods_answer_json(served_store, client_for):
    client = client_for(served_store)
    assert_error(client.get("/nowhere"), 404, "Not Found")
    assert_error(client.get("/search"), 405)
    assert_error(client.put("/images/0"), 405)
