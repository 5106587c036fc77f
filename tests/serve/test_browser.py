"""The page in headless Chromium (Debian's ``chromium``, driven by Playwright): upload a query image, see the
API's results, click one for more like it, build a query with + and the keyboard, reload the shared URL."""

from __future__ import annotations

import shutil

import httpx
import pytest
from serve_helpers import LoopbackServer, wait_for

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (Debian: apt-get install chromium; make test installs it when run as root with apt-get)")
K = 6


@pytest.fixture
def browser_page():
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package (dev extra) is not installed")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1100, "height": 800})
        page = context.new_page()
        problems: list[str] = []
        page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: problems.append(str(exc)))
        yield page, problems
        browser.close()


@pytest.fixture
def server(served_store):
    from vecmetric.serve import create_app

    running = LoopbackServer(create_app(served_store, thumbnails_on_disk=False))
    wait_for(lambda: httpx.get(running.url + "/healthz").status_code == 200, what="/healthz")
    yield running
    running.stop()


# True once the page shows exactly these result ids, in this order, with every thumbnail loaded.
SHOWS = """want => {
  const figures = [...document.querySelectorAll('#results figure')];
  return figures.length === want.length && figures.every((f, i) => Number(f.dataset.id) === want[i]
    && f.querySelector('img').complete && f.querySelector('img').naturalWidth > 0);
}"""


def expect_results(page, want: list[int], what: str) -> None:
    """Wait (on the DOM, no sleeping) until ``page`` shows the results ``want``; fail saying what it shows instead."""
    try:
        page.wait_for_function(SHOWS, arg=want, timeout=60_000)
    except Exception as exc:  # playwright's TimeoutError: say what the page showed
        ids = page.eval_on_selector_all("#results figure", "figs => figs.map(f => Number(f.dataset.id))")
        raise AssertionError(f"{what}: the page shows {ids} ({page.inner_text('#status')!r}), the API answers {want}") from exc


def api_ids(url: str, path: str, **kwargs) -> list[int]:
    answer = httpx.post(url + path, timeout=60, **kwargs)
    assert answer.status_code == 200, answer.text
    return [hit["id"] for hit in answer.json()["results"]]


def test_upload_click_combine_and_reload(served_store, server, browser_page, tmp_path):
    page, problems = browser_page
    query = sorted((served_store.parent / "images").rglob("*.png"))[6]
    page.goto(f"{server.url}/?k={K}")
    page.set_input_files("#file", str(query))
    want = api_ids(server.url, "/search/image", files={"image": ("q.png", query.read_bytes(), "image/png")}, data={"k": str(K)})
    assert len(want) == K
    expect_results(page, want, "the upload's results")
    assert "results for upload" in page.inner_text("#status")

    # Click a result: more like it.
    clicked = want[1]
    page.click(f"#results figure[data-id='{clicked}'] img")
    like = api_ids(server.url, "/search", json={"terms": [{"id": clicked}], "k": K})
    expect_results(page, like, "more like the clicked image")
    assert f"@{clicked}" in page.inner_text("#terms")

    # Keyboard: move to the second result and add it with +, then subtract the third with -.
    page.focus("#results figure")
    page.keyboard.press("ArrowRight")
    added = like[1]
    page.keyboard.press("+")
    terms = [{"id": clicked, "weight": 1}, {"id": added, "weight": 1}]
    combined = api_ids(server.url, "/search", json={"terms": terms, "k": K})
    expect_results(page, combined, "the + query's results")
    page.click(f"#results figure[data-id='{combined[2]}'] .minus")
    terms.append({"id": combined[2], "weight": -1})
    final = api_ids(server.url, "/search", json={"terms": terms, "k": K})
    expect_results(page, final, "the - query's results")

    # The query lives in the URL: a reload (or the link, shared) shows the same results.
    shared = page.url
    assert "terms=" in shared and f"k={K}" in shared
    page.reload()
    expect_results(page, final, "the same results after a reload")
    other = page.context.new_page()
    other.goto(shared)
    expect_results(other, final, "the same results from the shared link")
    page.go_back()  # history: the query before the - term
    expect_results(page, combined, "the previous query after Back")
    page.screenshot(path=str(tmp_path / "serve.png"), full_page=True)
    assert (tmp_path / "serve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not problems, problems  # no script errors, no blocked requests


def test_the_page_asks_for_the_token_once(served_store, browser_page):
    from vecmetric.serve import create_app

    running = LoopbackServer(create_app(served_store, token="page-token", thumbnails_on_disk=False))
    try:
        wait_for(lambda: httpx.get(running.url + "/healthz").status_code == 200, what="/healthz")
        page, problems = browser_page
        page.goto(f"{running.url}/?k=3&terms=" + '[{"id":2}]')
        page.wait_for_selector("#login[open]")
        page.fill("#token", "page-token")
        page.press("#token", "Enter")
        want = api_ids(running.url, "/search", json={"terms": [{"id": 2}], "k": 3}, headers={"Authorization": "Bearer page-token"})
        expect_results(page, want, "results after logging in")
        cookies = page.context.cookies()
        assert [c["httpOnly"] and c["sameSite"] == "Strict" for c in cookies] == [True]
        page.reload()
        expect_results(page, want, "results after a reload, without the token again")
        assert not page.is_visible("#login")
        assert [p for p in problems if "401" not in p] == []  # the first request's 401 is the only complaint
    finally:
        running.stop()
