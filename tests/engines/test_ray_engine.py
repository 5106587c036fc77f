"""The Ray engine on a local Ray instance that this module starts on loopback, and nothing else.

Outcomes are checked against a direct computation (hash the bytes, decode, embed in this
process); the socket check lists every connection of every Ray process mid-run.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from _helpers import assert_loopback_only, descendants, sockets_of

from vecmetric.engines import Outcome, ray_embed_outcomes
from vecmetric.engines.ray import BATCH_RETRIES, _EmbedWorker, _KnownHashes, _pool_shape, _stream
from vecmetric.errors import EncoderError, EngineError
from vecmetric.progress import SilentReporter
from vecmetric.store import FileEntry, content_hash, scan_folder


def test_missing_ray_is_one_line_with_the_install_command(monkeypatch, tiny_model):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real_find_spec(name, *a))
    with pytest.raises(EngineError) as caught:
        ray_embed_outcomes([FileEntry("/x.png", 1, 1, "x")], frozenset(), tiny_model, precision="fp32")
    assert str(caught.value) == "the ray engine needs Ray, which is not installed (install it with: pip install 'vecmetric[ray]')"
    assert caught.value.exit_code == 10


def test_known_hashes_membership():
    known = _KnownHashes(["b" * 32, "a" * 32, "c" * 32])
    probes = ("a" * 32, "b" * 32, "c" * 32, "0" * 32, "d" * 32, "b" * 31 + "c")
    assert [h in known for h in probes] == [True, True, True, False, False, False]
    assert "a" * 32 not in _KnownHashes([])


def test_pool_shape():
    assert _pool_shape({"CPU": 2.0}, None, 0.0) == (1, 2)  # one actor, both cores
    assert _pool_shape({"CPU": 64.0}, None, 0.0) == (8, 8)
    assert _pool_shape({"CPU": 16.0, "GPU": 2.0}, None, 0.5) == (4, 4)
    assert _pool_shape({"CPU": 16.0, "GPU": 2.0}, 1, 1.0) == (1, 8)
    with pytest.raises(EngineError, match="the Ray cluster has 0"):
        _pool_shape({"CPU": 16.0}, None, 1.0)


@pytest.fixture(scope="module")
def ray_local(ray_loopback):
    return ray_loopback[0]


@pytest.fixture(scope="module")
def folder(tmp_path_factory, small_model):
    """12 good 32 px images, three broken files, and the expected outcome of each good one."""
    from PIL import Image

    from vecmetric.encoders import load_encoder
    from vecmetric.images import decode_and_preprocess

    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(12):
        path = root / f"class_{i % 3}" / f"img_{i:02d}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(path)
    good = root / "class_0" / "img_00.png"
    (root / "class_1" / "empty.png").write_bytes(b"")
    (root / "class_1" / "text.jpg").write_bytes(b"this is not an image")
    (root / "class_2" / "half.png").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    encoder = load_encoder(small_model, device="cpu", precision="fp32")
    expected = {}
    for entry in scan_folder(root).files:
        data = Path(entry.path).read_bytes()
        if entry.path.endswith(("empty.png", "text.jpg", "half.png")):
            expected[entry.path] = (content_hash(data), None)
        else:
            pixels = decode_and_preprocess(data, encoder.preprocess)
            expected[entry.path] = (content_hash(data), encoder.embed_tensors(pixels[None])[0])
    return root, encoder, expected


def run(files, encoder, known=frozenset(), **kwargs) -> dict[str, Outcome]:
    outcomes = list(ray_embed_outcomes(files, known, encoder.spec, precision="fp32", batch_size=4, **kwargs))
    indices = [o.index for o in outcomes]
    assert sorted(indices) == list(range(len(files))), "every file exactly once"
    return {files[o.index].path: o for o in outcomes}


def test_outcomes_equal_a_direct_computation(ray_local, folder):
    root, encoder, expected = folder
    files = scan_folder(root).files
    files.append(FileEntry(str(root / "gone.png"), 1, 1, "gone"))  # scanned, then deleted
    got = run(files, encoder, preprocess=encoder.preprocess, fingerprint=encoder.fingerprint)

    for path, (digest, vector) in expected.items():
        assert got[path].content_hash == digest
        if vector is not None:
            assert got[path].error is None
            assert got[path].vector.dtype == np.float32
            np.testing.assert_allclose(got[path].vector, vector, atol=1e-5)
    assert got[str(root / "class_1" / "empty.png")].error == "empty file"
    assert got[str(root / "class_1" / "text.jpg")].error == "not an image, or a format Pillow cannot read"
    assert got[str(root / "class_2" / "half.png")].error.startswith("corrupt or truncated image")
    gone = got[str(root / "gone.png")]
    assert (gone.content_hash, gone.vector, gone.error) == (None, None, "cannot read: No such file or directory")
    skipped = [o for o in got.values() if o.error]
    assert all(o.vector is None for o in skipped) and len(skipped) == 4


def test_known_hashes_are_not_decoded(ray_local, folder):
    root, encoder, expected = folder
    files = scan_folder(root).files
    text = str(root / "class_1" / "text.jpg")
    image = str(root / "class_0" / "img_03.png")
    # Were the non-image decoded, it would come back with an error instead of "reuse".
    known = {expected[text][0], expected[image][0]}
    got = run(files, encoder, known=known, preprocess=encoder.preprocess)

    for path in (text, image):
        assert (got[path].content_hash, got[path].vector, got[path].error) == (expected[path][0], None, None)
    other = str(root / "class_0" / "img_06.png")
    np.testing.assert_allclose(got[other].vector, expected[other][1], atol=1e-5)


def test_an_actor_with_other_weights_refuses(ray_local, folder):
    root, encoder, _ = folder
    with pytest.raises(EncoderError, match="not the store's"):
        run(scan_folder(root).files, encoder, preprocess=encoder.preprocess, fingerprint="test_efficientnet-0000000000000000")


def test_every_ray_socket_is_on_loopback(ray_local, folder):
    root, encoder, _ = folder
    files = scan_folder(root).files
    outcomes = ray_embed_outcomes(files, frozenset(), encoder.spec, precision="fp32", batch_size=4, preprocess=encoder.preprocess)
    first = next(outcomes)  # mid-run: the actor and the decode workers are up
    names, sockets = sockets_of(descendants())
    rest = list(outcomes)

    assert len(rest) + 1 == len(files) and first.index not in {o.index for o in rest}
    assert {"gcs_server", "raylet"} <= names and any("_EmbedWorker" in n for n in names), names
    assert_loopback_only(sockets)


class _CrashingWorker(_EmbedWorker):
    """Loads the model, then kills its own process on every batch (as a GPU fault or the OOM killer would)."""

    attempts_log = ""  # set by the test (the class travels by value, with its attributes)

    def __call__(self, batch):
        with open(self.attempts_log, "a") as fh:
            fh.write(f"{os.getpid()}\n")
        os._exit(1)


@pytest.mark.slow
def test_a_batch_that_kills_every_actor_fails_the_run_after_bounded_retries(ray_local, folder, tmp_path, monkeypatch):
    import ray.cloudpickle

    monkeypatch.setattr(_CrashingWorker, "attempts_log", str(tmp_path / "attempts"))
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the actors cannot import this test module
    root, encoder, _ = folder
    files = scan_folder(root).files[:4]
    model = {"spec": encoder.spec, "precision": "fp32", "fingerprint": None, "allow_pickle_files": False}
    pool = {"batch_size": 4, "gpus_per_worker": 0.0, "workers": 1, "worker_class": _CrashingWorker}
    with pytest.raises(EngineError, match="the Ray run failed"):
        list(_stream(files, _KnownHashes([]), encoder.preprocess, model, pool, None, SilentReporter()))
    pids = (tmp_path / "attempts").read_text().split()
    assert len(pids) == 1 + BATCH_RETRIES and len(set(pids)) == len(pids), pids  # each attempt a fresh actor process


def test_workers_import_this_vecmetric(ray_local):
    import vecmetric

    @ray_local.remote(num_cpus=0.5)
    def where() -> str:
        import vecmetric

        return vecmetric.__file__

    assert ray_local.get(where.remote()) == vecmetric.__file__
