"""ThumbnailCache: hits and misses, keys, the disk layer, threads, and an unwritable folder."""

from __future__ import annotations

import os
import threading

import pytest

from vecmetric.present import ThumbnailCache


def test_miss_then_hit_in_memory_and_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("VECMETRIC_CACHE_DIR", str(tmp_path / "cache"))
    cache = ThumbnailCache("store-1")
    assert cache.get("abc123", 128, "JPEG") is None
    cache.put("abc123", 128, "JPEG", b"jpeg bytes")
    assert cache.get("abc123", 128, "jpg") == b"jpeg bytes"
    on_disk = tmp_path / "cache" / "thumbs" / "store-1" / "128-jpeg" / "abc123.jpg"
    assert on_disk.read_bytes() == b"jpeg bytes"
    assert [p.name for p in on_disk.parent.iterdir()] == ["abc123.jpg"]  # no temporary left behind
    # A new cache (a restarted server) finds it on disk.
    assert ThumbnailCache("store-1").get("abc123", 128, "JPEG") == b"jpeg bytes"
    assert cache.disk_error is None


def test_every_part_of_the_key_matters(tmp_path):
    cache = ThumbnailCache("s", folder=tmp_path / "thumbs")
    cache.put("hash-a", 128, "JPEG", b"A")
    assert cache.get("hash-b", 128, "JPEG") is None  # the file changed: its content hash did
    assert cache.get("hash-a", 64, "JPEG") is None
    assert cache.get("hash-a", 128, "PNG") is None
    assert ThumbnailCache("other-store", folder=tmp_path / "elsewhere").get("hash-a", 128, "JPEG") is None
    assert cache.get("hash-a", 128, "JPEG") == b"A"


def test_hostile_hash_and_store_id_stay_inside_the_cache_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("VECMETRIC_CACHE_DIR", str(tmp_path / "cache"))
    cache = ThumbnailCache("../../escape")
    cache.put("../../../evil", 32, "PNG", b"x")
    written = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert len(written) == 1 and written[0].suffix == ".png"
    assert not (tmp_path / "evil.png").exists()
    assert cache.get("../../../evil", 32, "PNG") == b"x"


def test_memory_is_an_lru_bounded_in_bytes():
    cache = ThumbnailCache("s", disk=False, memory_bytes=10)
    cache.put("a", 1, "PNG", b"aaaa")
    cache.put("b", 1, "PNG", b"bbbb")
    assert cache.get("a", 1, "PNG") == b"aaaa"  # now the most recently used
    cache.put("c", 1, "PNG", b"cccc")  # 12 bytes > 10: the least recently used ("b") goes
    assert cache.get("b", 1, "PNG") is None
    assert cache.get("a", 1, "PNG") == b"aaaa" and cache.get("c", 1, "PNG") == b"cccc"
    cache.put("huge", 1, "PNG", b"x" * 11)  # larger than the whole budget: not kept, nothing evicted
    assert cache.get("huge", 1, "PNG") is None and cache.get("a", 1, "PNG") == b"aaaa"


def test_concurrent_requests_make_each_thumbnail_once(tmp_path):
    shared_threads = 6
    lock, misses, all_missed = threading.Lock(), [0], threading.Event()

    class CountingCache(ThumbnailCache):
        def get(self, content_hash, size, fmt="JPEG"):
            found = super().get(content_hash, size, fmt)
            if content_hash == "shared" and found is None:
                with lock:
                    misses[0] += 1
                    if misses[0] >= shared_threads:
                        all_missed.set()
            return found

    cache = CountingCache("s", folder=tmp_path / "thumbs")
    made: list[str] = []

    def make_for(key):
        def make():
            made.append(key)
            if key == "shared":
                # Finish only once every thread has missed: without one maker per key, each would make it.
                assert all_missed.wait(timeout=30)
            return f"thumb-{key}".encode()

        return make

    results: dict[int, bytes] = {}

    def ask(n):
        key = "shared" if n < shared_threads else f"own-{n}"
        results[n] = cache.get_or_make(key, 64, "JPEG", make_for(key))

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(shared_threads + 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(made) == ["own-6", "own-7", "shared"]
    assert all(results[n] == b"thumb-shared" for n in range(shared_threads))
    assert results[6] == b"thumb-own-6" and results[7] == b"thumb-own-7"


def test_a_failing_make_caches_nothing(tmp_path):
    cache = ThumbnailCache("s", folder=tmp_path / "thumbs")

    def broken():
        raise RuntimeError("decoder exploded")

    with pytest.raises(RuntimeError):
        cache.get_or_make("h", 64, "JPEG", broken)
    assert cache.get("h", 64, "JPEG") is None
    assert cache.get_or_make("h", 64, "JPEG", lambda: b"ok") == b"ok"


def test_unwritable_folder_falls_back_to_memory(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")  # unwritable even for root
    cache = ThumbnailCache("s", folder=blocker / "thumbs")
    cache.put("h", 64, "JPEG", b"data")
    assert cache.get("h", 64, "JPEG") == b"data"
    assert "cannot write thumbnails" in cache.disk_error
    cache.put("h2", 64, "JPEG", b"more")  # no second attempt at the disk, still no failure
    assert cache.get("h2", 64, "JPEG") == b"more"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_falls_back_to_memory(tmp_path):
    folder = tmp_path / "thumbs"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        cache = ThumbnailCache("s", folder=folder)
        cache.put("h", 64, "PNG", b"data")
        assert cache.get("h", 64, "PNG") == b"data" and cache.disk_error
    finally:
        folder.chmod(0o755)
