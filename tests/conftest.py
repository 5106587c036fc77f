"""Shared fixtures: every test runs isolated in ``tmp_path``, offline, on tiny models.

Factories are fixtures (not importable helpers) so test modules need no package
layout: ``make_images``, ``fake_encoder``, ``write_rows``, ``run_vecmetric``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

# Set before anything imports huggingface_hub: a pretrained spec then fails at once
# instead of retrying the network for a minute.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "2")

REPO_ROOT = Path(__file__).resolve().parents[1]
# VECMETRIC_TEST_DATA points a worktree (whose parent has no shared/) at the shared data.
SHARED_DATA = Path(os.environ.get("VECMETRIC_TEST_DATA") or REPO_ROOT / ".." / "shared" / "data").resolve()
OMNIGLOT = SHARED_DATA / "omniglot_small"

from _helpers import OTHER_TINY_MODEL, TINY_MODEL  # noqa: E402  (tests/ is on sys.path: see _helpers)


def pytest_sessionstart(session):
    """One export cache for the whole session (under pytest's own temporary folder): every new store of a
    model copies the export checked once, instead of exporting the model again in each test."""
    os.environ["VECMETRIC_CACHE_DIR"] = str(session.config._tmp_path_factory.mktemp("export-cache"))


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes over ~20 s on two CPU cores (still run by default)")
    try:
        import torch

        torch.set_num_threads(2)
    except ImportError:  # pragma: no cover
        pass


@pytest.fixture
def runner():
    """typer's CLI runner keeping stderr apart from stdout (click >= 8.2 always does; 8.1 needs mix_stderr=False)."""
    from typer.testing import CliRunner

    try:
        return CliRunner(mix_stderr=False)
    except TypeError:
        return CliRunner()


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """cwd, HOME, caches and the default store all inside ``tmp_path``."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("VECMETRIC_STORE", str(tmp_path / "env-store"))
    monkeypatch.setenv("TORCH_HOME", str(home / ".cache" / "torch"))
    monkeypatch.setenv("HF_HOME", str(home / ".cache" / "huggingface"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.setenv("COLUMNS", "200")
    return tmp_path


@pytest.fixture
def tiny_model() -> str:
    return TINY_MODEL


@pytest.fixture
def other_tiny_model() -> str:
    return OTHER_TINY_MODEL


@pytest.fixture(scope="session")
def tiny_encoder():
    """The tiny encoder, loaded once per session (fp32, CPU, so results are exact)."""
    from vecmetric.encoders import load_encoder

    return load_encoder(TINY_MODEL, device="cpu", precision="fp32")


@pytest.fixture(scope="session")
def small_model(tmp_path_factory) -> str:
    """A checkpoint folder of the tiny model at 32 px: a valid spec that is ~25x cheaper per image.

    Used where many images or subprocesses are needed (killed runs, the CLI).
    """
    from vecmetric.encoders import PreprocessConfig, load_encoder, save_checkpoint

    encoder = load_encoder(TINY_MODEL, device="cpu")
    folder = tmp_path_factory.mktemp("small-model") / "test_efficientnet-32px"
    preprocess = PreprocessConfig(image_size=32, mean=encoder.preprocess.mean, std=encoder.preprocess.std, crop_pct=1.0)
    save_checkpoint(folder, encoder.model, encoder.architecture, preprocess)
    return str(folder)


def _draw_image(path: Path, seed: int, cls: int, size: int = 48, mode: str = "RGB") -> None:
    """A distinct picture: a class colour and shape, jittered per image, plus seeded noise."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 60, size=(size, size, 3), dtype=np.uint8) + 180
    img = Image.fromarray(arr, "RGB")
    draw = ImageDraw.Draw(img)
    colour = ((cls * 67) % 256, (cls * 131 + 40) % 256, (cls * 29 + 90) % 256)
    off = int(rng.integers(0, size // 4))
    box = (4 + off, 6 + off // 2, size - 6 - off // 3, size - 4 - off)
    (draw.ellipse if cls % 2 else draw.rectangle)(box, fill=colour)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.convert(mode).save(path)


@pytest.fixture
def make_images():
    """``make_images(root, classes=3, per_class=4, size=48, seed=0, suffix='.png')`` -> sorted list of paths."""

    def make(root: Path, classes: int = 3, per_class: int = 4, size: int = 48, seed: int = 0, suffix: str = ".png") -> list[Path]:
        root = Path(root)
        paths = []
        for c in range(classes):
            for i in range(per_class):
                path = root / f"class_{c:02d}" / f"img_{i:03d}{suffix}"
                _draw_image(path, seed * 100_003 + c * 1009 + i, c, size)
                paths.append(path)
        return sorted(paths)

    return make


@pytest.fixture
def planted_store(tmp_path, make_images, small_model):
    """``(photos, store, groups)``: 16 distinct images under ``photos``, 4 with two near copies and one with a
    byte copy (``plant_duplicates``), embedded by the 32 px tiny model into ``store`` (no index yet)."""
    from _helpers import plant_duplicates

    from vecmetric.store import embed_directory

    photos = tmp_path / "photos"
    groups = plant_duplicates(make_images(photos, classes=16, per_class=1, size=64))
    embed_directory(photos, tmp_path / "store", model=small_model, workers=0)
    return photos, tmp_path / "store", groups


@pytest.fixture
def image_folder(tmp_path, make_images) -> Path:
    """3 classes x 4 generated PNGs under ``tmp_path/images``."""
    make_images(tmp_path / "images")
    return tmp_path / "images"


@pytest.fixture(scope="session")
def bundled_omniglot() -> Path:
    """The Omniglot sample the repository ships (examples/data/omniglot): there in every clone."""
    return REPO_ROOT / "examples" / "data" / "omniglot"


@pytest.fixture(scope="session")
def omniglot_root() -> Path:
    if not OMNIGLOT.is_dir():
        pytest.skip(f"shared data not found at {OMNIGLOT}")
    return OMNIGLOT


@pytest.fixture
def omniglot_folder(tmp_path, omniglot_root) -> Path:
    """4 Omniglot classes x 5 images copied into ``tmp_path/omniglot``."""
    target = tmp_path / "omniglot"
    classes = sorted(p for p in omniglot_root.iterdir() if p.is_dir())[::60][:4]
    for cls in classes:
        for image in sorted(cls.glob("*.png"))[:5]:
            (target / cls.name).mkdir(parents=True, exist_ok=True)
            shutil.copy2(image, target / cls.name / image.name)
    return target


@pytest.fixture
def fake_encoder():
    """``fake_encoder(dim, metric='cosine', name='fake')``: what ``create_store`` needs of an encoder, without torch."""

    def make(dim: int, metric: str = "cosine", name: str = "fake"):
        fingerprint = f"{name}-{dim:016x}"
        described = {
            "spec": f"test:{name}",
            "fingerprint": fingerprint,
            "dim": dim,
            "metric": metric,
            "architecture": {"source": "test", "name": name},
            "preprocess": {},
        }
        return SimpleNamespace(spec=described["spec"], fingerprint=fingerprint, dim=dim, metric=metric, describe=lambda: dict(described))

    return make


@pytest.fixture
def write_rows():
    """``write_rows(store, ids, vectors, labels=None)``: append rows to a store directly (no images)."""

    def write(store, ids, vectors, labels=None):
        import numpy as np
        import pyarrow as pa

        from vecmetric.store import numpy_to_embeddings, store_schema

        ids = [int(i) for i in ids]
        vectors = np.asarray(vectors, dtype=np.float32)
        table = pa.table(
            {
                "id": pa.array(ids, pa.int64()),
                "path": [f"/data/{i}.png" for i in ids],
                "size": pa.array([1] * len(ids), pa.int64()),
                "mtime_ns": pa.array([0] * len(ids), pa.int64()),
                "content_hash": [f"h{i}" for i in ids],
                "label": list(labels) if labels is not None else [f"c{i % 7}" for i in ids],
                "model": [store.model["fingerprint"]] * len(ids),
                "embedding": numpy_to_embeddings(vectors),
            },
            schema=store_schema(store.dim),
        )
        store.write_manifest(next_id=max(ids) + 1 if ids else store.manifest.get("next_id", 0))
        return store.append(table)

    return write


@pytest.fixture
def clustered_vectors():
    """``clustered_vectors(n, dim, clusters, seed)``: float32 points around random centres."""

    def make(n: int = 3000, dim: int = 32, clusters: int = 30, seed: int = 0):
        import numpy as np

        rng = np.random.default_rng(seed)
        centres = rng.normal(size=(clusters, dim)).astype(np.float32) * 3
        which = rng.integers(0, clusters, size=n)
        return (centres[which] + rng.normal(size=(n, dim)).astype(np.float32)).astype(np.float32)

    return make


@pytest.fixture
def run_vecmetric():
    """``run_vecmetric(*args, **kw)``: ``python -m vecmetric ARGS`` in a subprocess (cwd and env of the test)."""

    def run(*args: str, timeout: float = 120, **kwargs):
        return subprocess.run(
            [sys.executable, "-m", "vecmetric", *args], capture_output=True, text=True, timeout=timeout, **kwargs
        )

    return run


@pytest.fixture
def other_process():
    """A live process that is not vecmetric (its pid makes a lock look held)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


#: Set before ray is imported: no usage stats, 127.0.0.1 kept as the node address (see vecmetric._ray_session),
#: token authentication on without Ray's warning about it, Ray Data's INFO lines off.
RAY_TEST_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "token",
    "RAY_DATA_LOG_LEVEL": "WARNING",
}


@pytest.fixture(scope="session")
def ray_home(tmp_path_factory):
    """HOME for every Ray instance of the session: where Ray keeps its auth token. Ray caches the token
    in the process, so an instance started later under another HOME would not find the token it expects."""
    return tmp_path_factory.mktemp("rayhome")


@pytest.fixture(scope="module")
def ray_loopback(tmp_path_factory, ray_home):
    """A 2-CPU Ray instance on loopback for one test module: ``(ray, home)``.

    Its temp dir lives in a short tmp folder (Ray's socket paths must stay under 107 characters),
    its auth token in ``home``. The environment above stays set for the module, so a ``vecmetric``
    subprocess that starts Ray or joins this one (``--address``, with ``HOME=home``) gets it too, and
    Ray's probe of an outside address (8.8.8.8) fails the test if anything in this process calls it.
    Module-scoped, not session-scoped: other modules fork DataLoader workers, which a process that
    holds Ray's gRPC threads should not do.
    """
    if importlib.util.find_spec("ray") is None:
        pytest.skip("ray is not installed (pip install 'vecmetric[ray]')")
    temp = tmp_path_factory.mktemp("r")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {**RAY_TEST_ENV, "HOME": str(ray_home), "RAY_TMPDIR": str(temp)}.items():
            mp.setenv(key, value)
        import ray
        from ray._private import ray_constants, services

        assert not ray_constants.ENABLE_RAY_CLUSTER, "ray was imported before RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 was set"

        def no_probe(*args, **kwargs):
            raise AssertionError("Ray probed an outside address to find this node's IP")

        mp.setattr(services, "node_ip_address_from_perspective", no_probe)
        ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", _temp_dir=str(temp))
        try:
            yield ray, ray_home
        finally:
            ray.shutdown()


#: open_clip's smallest built-in architecture with both towers (CLIP's BPE tokenizer), untrained.
CLIP_MODEL = "open_clip:ViT-S-32-alt@random"


@pytest.fixture(scope="session")
def l2_head_checkpoint(tmp_path_factory) -> str:
    """A checkpoint of the tiny model with a 32-d projection head, not normalised, for the l2 metric.

    Its batch-norm statistics are measured on generated images: the untouched random network maps
    every image to nearly one point (distances ~1e-6, where float noise decides neighbours), this
    one spreads them as a trained network would.
    """
    import torch

    from vecmetric.encoders import ArchitectureConfig, load_encoder, save_checkpoint
    from vecmetric.encoders._export_check import natural_images
    from vecmetric.encoders._model import EmbeddingModel

    tiny = load_encoder(TINY_MODEL, device="cpu", precision="fp32")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        model = EmbeddingModel(tiny.model.backbone, tiny.model.backbone_dim, embedding_dim=32, normalize=False)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # a plain average over the batch
    with torch.no_grad():
        model.train()(tiny.normalize(natural_images(tiny.preprocess, count=32, seed=5)))
    model.eval()
    architecture = ArchitectureConfig(source="timm", name=tiny.architecture.name, embedding_dim=32, normalize=False)
    folder = tmp_path_factory.mktemp("l2-head") / "run"
    save_checkpoint(folder, model, architecture, tiny.preprocess, metric="l2")
    return str(folder)


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """``exported(spec)`` -> ``(encoder, ExportInfo)``: each model loaded (CPU, fp32) and exported once per session."""
    done = {}

    def get(spec: str):
        if spec not in done:
            from vecmetric.encoders import load_encoder
            from vecmetric.encoders.export import export_encoder

            encoder = load_encoder(spec, device="cpu", precision="fp32")
            done[spec] = (encoder, export_encoder(encoder, tmp_path_factory.mktemp("export") / "model"))
        return done[spec]

    return get


@pytest.fixture(scope="session")
def mixed_images(tmp_path_factory) -> list[Path]:
    """Images of different kinds, from what every clone has: bundled Omniglot characters (1-bit PNGs), a
    held-out query, greyscale and colour JPEGs, and an RGBA PNG; plus real faces and objects when the
    shared data sets are there."""
    bundled = REPO_ROOT / "examples"
    paths = [
        bundled / "data/omniglot/train/Balinese__character01/0108_01.png",
        bundled / "data/omniglot/test/Greek__character13/0406_03.png",
        bundled / "data/omniglot/test/Tagalog__character03/0895_01.png",
        sorted((bundled / "queries").glob("*.png"))[0],
    ]
    folder = tmp_path_factory.mktemp("mixed")
    for i in range(2):
        _draw_image(folder / f"colour_{i}.jpg", seed=40 + i, cls=i + 1, size=300)
    _draw_image(folder / "grey.jpg", seed=50, cls=3, size=200, mode="L")
    _draw_image(folder / "alpha.png", seed=51, cls=4, size=120, mode="RGBA")
    shared = [SHARED_DATA / p for p in ("orl_faces/s1/1.pgm", "orl_faces/s23/9.pgm", "coil20_32px/obj07/30.png")]
    return [p for p in paths if p.is_file()] + sorted(folder.iterdir()) + [p for p in shared if p.is_file()]
