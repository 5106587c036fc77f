"""The token rules: bearer header or the page's cookie, same-origin writes, loopback Host names, and the CLI's refusal."""

from __future__ import annotations

import hmac

import pytest
from _helpers import one_error_line

from vecmetric.serve import COOKIE, check_listen, is_loopback

TOKEN = "s3cret-t0ken-for-tests"
ORIGIN = "http://127.0.0.1:8000"


@pytest.fixture
def locked(served_store, client_for):
    return client_for(served_store, token=TOKEN)


def data_requests(client, store, headers=None):
    """One request to every data endpoint."""
    picture = sorted((store.parent / "images").rglob("*.png"))[0]
    image = {"image": ("q.png", picture.read_bytes(), "image/png")}
    return {
        "search": client.post("/search", json={"terms": [{"id": 0}], "k": 2}, headers=headers),
        "search/image": client.post("/search/image", files=image, headers=headers),
        "images": client.get("/images/0", headers=headers),
        "thumbs": client.get("/thumbs/0", headers=headers),
        "info": client.get("/info", headers=headers),
    }


def test_every_data_request_needs_the_token(locked, served_store):
    for name, answer in data_requests(locked, served_store).items():
        assert answer.status_code == 401, name
        assert answer.json()["error"] == "this server needs a token" and answer.headers["www-authenticate"] == "Bearer"
    for wrong in ("Bearer nope", f"Bearer {TOKEN}x", f"Basic {TOKEN}", TOKEN, "Bearer "):
        assert locked.post("/search", json={"terms": [{"id": 0}]}, headers={"Authorization": wrong}).status_code == 401
    for name, answer in data_requests(locked, served_store, headers={"Authorization": f"Bearer {TOKEN}"}).items():
        assert answer.status_code == 200, (name, answer.text)


def test_health_needs_no_token_and_says_nothing_about_the_data(locked):
    answer = locked.get("/healthz")
    assert answer.status_code == 200 and answer.json() == {"ok": True}
    assert locked.get("/session").json() == {"token_required": True, "authenticated": False}
    assert locked.get("/").status_code == 200 and locked.get("/openapi.json").status_code == 200  # no data in either


def test_the_page_logs_in_once_with_a_cookie(locked):
    assert locked.post("/session", json={"token": "wrong"}, headers={"Origin": ORIGIN}).status_code == 401
    answer = locked.post("/session", json={"token": TOKEN}, headers={"Origin": ORIGIN})
    assert answer.status_code == 200
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert TOKEN not in cookie  # an HMAC of the token, not the token
    assert locked.get("/session").json() == {"token_required": True, "authenticated": True}
    assert locked.get("/thumbs/0").status_code == 200 and locked.get("/info").status_code == 200  # reads: the cookie is enough
    same = locked.post("/search", json={"terms": [{"id": 0}], "k": 2}, headers={"Origin": ORIGIN})
    assert same.status_code == 200
    assert locked.post("/search", json={"terms": [{"id": 0}], "k": 2}, headers={"Referer": ORIGIN + "/?terms=x"}).status_code == 200
    for headers in ({}, {"Origin": "http://127.0.0.1:9999"}, {"Origin": "http://evil.example"}, {"Origin": "null"}, {"Referer": "http://evil.example/"}):
        refused = locked.post("/search", json={"terms": [{"id": 0}], "k": 2}, headers=headers)
        assert refused.status_code == 403 and "own page" in refused.json()["error"], headers
    locked.delete("/session")
    assert locked.post("/search", json={"terms": [{"id": 0}]}, headers={"Origin": ORIGIN}).status_code == 401


def test_tokens_are_compared_in_constant_time(locked, monkeypatch):
    compared = []
    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: compared.append((a, b)) or real(a, b))
    locked.get("/info", headers={"Authorization": "Bearer guess"})
    locked.post("/session", json={"token": "guess2"}, headers={"Origin": ORIGIN})
    assert (b"guess", TOKEN.encode()) in compared and (b"guess2", TOKEN.encode()) in compared


def test_without_a_token_loopback_names_only(served_store, client_for):
    from vecmetric.serve import LOOPBACK_HOSTS

    client = client_for(served_store, trusted_hosts=LOOPBACK_HOSTS)
    assert client.get("/info").status_code == 200
    for host in ("localhost:8000", "[::1]:8000", "127.0.0.1"):
        assert client.get("/info", headers={"Host": host}).status_code == 200, host
    rebound = client.get("/info", headers={"Host": "attacker.example:8000"})  # DNS rebinding: a foreign name on our address
    assert rebound.status_code == 400 and "loopback" in rebound.json()["error"]
    assert client.get("/healthz", headers={"Host": "attacker.example"}).status_code == 400


def test_only_loopback_is_served_without_a_token(run_vecmetric, served_store):
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("[::1]") and is_loopback("localhost") and is_loopback("127.3.4.5")
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.5", "example.org", "localhost.example.org"))
    check_listen("0.0.0.0", "a-token")  # allowed with a token (nothing listens here)
    for host in ("0.0.0.0", "192.168.1.5", "::"):
        done = run_vecmetric("serve", "--store", str(served_store), "--host", host, "--port", "0", env=without_token())
        line = one_error_line(done, 2, "refusing to listen on", host, "VECMETRIC_TOKEN=", "--token")
        assert "secrets.token_urlsafe" in line


def without_token():
    import os

    return {k: v for k, v in os.environ.items() if k != "VECMETRIC_TOKEN"}
