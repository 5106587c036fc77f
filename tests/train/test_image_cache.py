"""The decoded-image cache: identical samples to decoding each time, memory limits, workers, a whole run."""

import numpy as np
import pytest
import torch
from _helpers import RecordingReporter, fast_options, make_class_folders
from PIL import Image
from safetensors.torch import load_file

from vecmetric.errors import TrainError
from vecmetric.evaluate import scan_class_folders
from vecmetric.train import image_cache, train
from vecmetric.train.data import TrainImages
from vecmetric.train.image_cache import build_image_cache, plan_image_cache


@pytest.fixture
def mixed_folders(tmp_path):
    """Two classes of images in every mode the decoder converts, and JPEGs big enough to be draft-decoded."""
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    for c in range(2):
        folder = root / f"class_{c}"
        folder.mkdir(parents=True)
        noise = rng.integers(0, 256, (300, 420, 3), dtype=np.uint8)
        Image.fromarray(noise).save(folder / "big.jpg", quality=90)  # 420x300: draft-decoded at 1/4 for 48 px
        Image.fromarray(noise[:90, :70]).save(folder / "rgb.png")
        Image.fromarray(noise[:60, :80, 0]).save(folder / "grey.png")
        Image.fromarray(noise[:64, :64]).convert("P").save(folder / "palette.png")
        rgba = np.dstack([noise[:50, :90], rng.integers(0, 256, (50, 90), dtype=np.uint8)])
        Image.fromarray(rgba, "RGBA").save(folder / "alpha.png")
    return root


def test_cached_samples_equal_decoded_ones_for_every_image_kind(mixed_folders):
    images = scan_class_folders(mixed_folders)
    plan = plan_image_cache(images.paths, 48, "auto", shared=False)
    assert plan.cache and len(plan.sizes) == len(images) == 10
    assert (105, 75) in plan.sizes  # the 420x300 JPEG at its draft scale, not its full size
    cache = build_image_cache(images.paths, plan, 48, shared=False)
    assert cache.nbytes == plan.nbytes == sum(3 * w * h for w, h in plan.sizes)
    plain = TrainImages(images, 48, "bicubic", flip=True)
    cached = TrainImages(images, 48, "bicubic", flip=True, cache=cache)
    for index in range(len(images)):
        for seed in (1, 2, 3):
            a, label_a = plain[(index, seed)]
            b, label_b = cached[(index, seed)]
            assert torch.equal(a, b) and label_a == label_b, (images.paths[index], seed)


def test_auto_declines_when_memory_or_shared_memory_is_short_and_ram_refuses(mixed_folders, monkeypatch):
    paths = scan_class_folders(mixed_folders).paths
    needed = plan_image_cache(paths, 48, "auto", shared=False).nbytes

    monkeypatch.setattr(image_cache, "available_memory", lambda: 3 * needed)  # fits, but not in a quarter
    plan = plan_image_cache(paths, 48, "auto", shared=False)
    assert not plan.cache and "a quarter of the free memory (--cache ram to force it)" in plan.reason
    assert plan_image_cache(paths, 48, "ram", shared=False).cache

    monkeypatch.setattr(image_cache, "available_memory", lambda: 100 * needed)
    assert plan_image_cache(paths, 48, "auto", shared=False).cache
    assert not plan_image_cache(paths, 48, "auto", shared=False, processes=30).cache  # one cache per DDP process
    monkeypatch.setattr(image_cache, "shared_memory_free", lambda: needed // 2)
    assert plan_image_cache(paths, 48, "auto", shared=False).cache  # no workers: no shared memory needed
    plan = plan_image_cache(paths, 48, "auto", shared=True)
    assert not plan.cache and "would not fit in the free shared memory (/dev/shm)" in plan.reason
    with pytest.raises(TrainError, match=r"--cache ram: the decoded images need .* more than the free shared memory") as info:
        plan_image_cache(paths, 48, "ram", shared=True)
    assert "docker --shm-size" in info.value.hint

    monkeypatch.setattr(image_cache, "available_memory", lambda: needed // 2)
    with pytest.raises(TrainError, match="more than the free memory"):
        plan_image_cache(paths, 48, "ram", shared=False)
    assert plan_image_cache(paths, 48, "off", shared=False).cache is False


def test_auto_declines_a_folder_far_too_big_from_a_sample_of_its_headers(mixed_folders, monkeypatch):
    paths = scan_class_folders(mixed_folders).paths
    needed = plan_image_cache(paths, 48, "auto", shared=False).nbytes
    calls = []

    def counted(path, min_size):
        calls.append(path)
        return real(path, min_size)

    real = image_cache.decoded_size
    monkeypatch.setattr(image_cache, "decoded_size", counted)
    monkeypatch.setattr(image_cache, "HEADER_SAMPLE", 2)  # 10 images: more than 4 samples' worth
    monkeypatch.setattr(image_cache, "available_memory", lambda: needed // 2)  # a quarter: 1/8 of what is needed
    plan = plan_image_cache(paths, 48, "auto", shared=False)
    assert not plan.cache and plan.reason.startswith("about ") and "(--cache ram to force it)" in plan.reason
    assert len(calls) == 2
    calls.clear()
    monkeypatch.setattr(image_cache, "available_memory", lambda: 4 * needed)  # a quarter is just enough
    assert plan_image_cache(paths, 48, "auto", shared=False).cache and len(calls) == 2 + len(paths)


def test_a_file_changed_after_planning_is_one_train_error(mixed_folders):
    paths = scan_class_folders(mixed_folders).paths
    plan = plan_image_cache(paths, 48, "auto", shared=False)
    Image.new("RGB", (33, 44)).save(paths[-1], format="PNG")
    with pytest.raises(TrainError, match=r"changed while training started \(its size is now 33x44\)"):
        build_image_cache(paths, plan, 48, shared=False)
    paths[0] = str(mixed_folders / "gone.png")
    with pytest.raises(TrainError, match="gone.png"):
        plan_image_cache(paths, 48, "auto", shared=False)


def test_spawned_workers_read_the_shared_cache(mixed_folders):
    images = scan_class_folders(mixed_folders)
    plan = plan_image_cache(images.paths, 48, "ram", shared=True)
    cache = build_image_cache(images.paths, plan, 48, shared=True)
    assert cache.buffer.is_shared()
    keys = [[(i, 7 * i) for i in range(len(images))]]
    loader = torch.utils.data.DataLoader(
        TrainImages(images, 48, cache=cache), batch_sampler=keys, num_workers=1, multiprocessing_context="spawn"
    )
    (batch, labels), = list(loader)
    expected = torch.stack([TrainImages(images, 48)[key][0] for key in keys[0]])
    assert torch.equal(batch, expected) and labels.tolist() == images.labels


def test_training_gives_the_same_model_with_and_without_the_cache(tmp_path):
    data = make_class_folders(tmp_path / "data")
    runs = {}
    for mode in ("ram", "off"):
        reporter = RecordingReporter()
        result = train(data, tmp_path / mode, fast_options(epochs=2, embedding_dim=8, cache=mode), reporter)
        runs[mode] = (load_file(str(tmp_path / mode / "last" / "model.safetensors")), result.last)
    (a, last_a), (b, last_b) = runs["ram"], runs["off"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert last_a["loss"] == last_b["loss"] and last_a["mean_average_precision_at_r"] == last_b["mean_average_precision_at_r"]


def test_a_run_resumes_with_another_cache_setting(tmp_path):
    data = make_class_folders(tmp_path / "data")
    with pytest.raises(KeyboardInterrupt):
        train(data, tmp_path / "run", fast_options(epochs=2, cache="ram"), RecordingReporter(interrupt_after=1))
    result = train(data, tmp_path / "run", fast_options(epochs=2, cache="off", resume=True), RecordingReporter())
    assert result.resumed_from_epoch == 1 and result.last["epoch"] == 2


def test_unknown_cache_mode_is_refused(tmp_path):
    with pytest.raises(TrainError, match="unknown --cache 'disk'.*auto, ram, off"):
        train(make_class_folders(tmp_path / "data"), tmp_path / "run", fast_options(cache="disk"), RecordingReporter())


def test_available_memory_is_read_on_this_machine():
    free = image_cache.available_memory()
    assert free is not None and 0 < free < 1 << 50
