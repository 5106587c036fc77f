"""Safe loading: checkpoints are read only as safetensors + JSON; pickles are refused and never run;
hostile configs and manifests give a typed error, never a traceback or code execution."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
from _reliability import embed_args, one_error_line


class Payload:
    """Unpickling this runs ``open(marker, 'w')``: proof that a pickle was executed."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def evil_pickle(path: Path, marker: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(Payload(str(marker))))


def outside_query(gallery, tmp_path: Path) -> Path:
    """A copy of a stored image outside the store's folders, so that search must load the model to embed it
    (a path the store holds is answered with its stored vector, without any model)."""
    query = tmp_path / "outside-query.png"
    if not query.exists():
        shutil.copy(next(gallery.images.rglob("*.png")), query)
    return query


@pytest.fixture
def checkpoint(model32, tmp_path) -> Path:
    folder = tmp_path / "checkpoint"
    shutil.copytree(model32, folder)
    return folder


@pytest.mark.parametrize("name", ["model.pt", "weights.pth", "pytorch_model.bin", "last.ckpt", "sub/state.pkl", "x.pickle"])
def test_pickle_in_checkpoint_is_refused_and_never_run(cli, gallery, checkpoint, tmp_path, name):
    marker = tmp_path / "pwned"
    evil_pickle(checkpoint / name, marker)
    done = cli.run(*embed_args(gallery.images, tmp_path / "store", str(checkpoint)))
    one_error_line(done, 4, "contains pickle files", Path(name).name, "--allow-pickle-files")
    assert not marker.exists()
    assert not (tmp_path / "store").exists() or not list((tmp_path / "store").glob("part-*"))

    allowed = cli.run(*embed_args(gallery.images, tmp_path / "store", str(checkpoint), "--allow-pickle-files"))
    assert allowed.code == 0, allowed.err
    assert not marker.exists()  # accepted, and still never unpickled

    # With the store's ONNX export, search never opens the checkpoint at all; without it, it must, and refuses.
    found = cli.run("search", outside_query(gallery, tmp_path), "--store", tmp_path / "store", "--k", "1")
    assert found.code == 0 and not marker.exists(), found.err
    shutil.rmtree(tmp_path / "store" / "_model", ignore_errors=True)
    found = cli.run("search", outside_query(gallery, tmp_path), "--store", tmp_path / "store", "--k", "1")
    one_error_line(found, 4, "contains pickle files")  # every command refuses it without the flag
    assert not marker.exists()


def test_weights_only_through_safetensors(checkpoint, monkeypatch):
    """Loading a checkpoint never calls torch.load or any unpickler."""
    import torch

    from vecmetric.encoders import load_encoder

    def forbidden(*args, **kwargs):
        raise AssertionError("a pickle loader was called")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    encoder = load_encoder(str(checkpoint), device="cpu")
    assert encoder.dim == 256


@pytest.mark.parametrize(
    "change,needle",
    [
        ({"weights": "model.pt"}, "must be a .safetensors file"),
        ({"weights": "../../elsewhere.safetensors"}, "must be a .safetensors file"),
        ({"architecture": {"source": "timm", "name": "__import__('os').system('touch pwned')"}}, ""),
        ({"architecture": {"source": "eval", "name": "x"}}, "unknown architecture source"),
        ({"architecture": "resnet50"}, "damaged"),
        ({"architecture": None}, "damaged"),
        ({"preprocess": {"image_size": "huge", "mean": [0, 0, 0], "std": [1, 1, 1]}}, "damaged"),
        ({"preprocess": None}, "damaged"),
        ({"format": "something-else"}, "not a vecmetric checkpoint config"),
        ({"architecture": {"source": "timm", "name": "test_efficientnet", "embedding_dim": 17}}, "cannot load"),
    ],
)
def test_hostile_config_values_give_an_encoder_error(cli, gallery, checkpoint, tmp_path, change, needle):
    config = json.loads((checkpoint / "config.json").read_text())
    config.update(change)
    (checkpoint / "config.json").write_text(json.dumps(config))
    done = cli.run(*embed_args(gallery.images, tmp_path / "store", str(checkpoint)), cwd=tmp_path)
    one_error_line(done, 4, needle)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("text", ["", "{", "[]", "null", '"a string"', "1e999999"])
def test_unreadable_config_gives_an_encoder_error(cli, gallery, checkpoint, tmp_path, text):
    (checkpoint / "config.json").write_text(text)
    done = cli.run(*embed_args(gallery.images, tmp_path / "store", str(checkpoint)))
    one_error_line(done, 4)


def test_store_manifest_pointing_at_a_pickle_checkpoint_is_not_run(cli, gallery, checkpoint, tmp_path):
    """Nothing in a store is evaluated: its model spec is only ever parsed as a spec."""
    from _reliability import copy_store

    store = copy_store(gallery.reference, tmp_path / "store")
    shutil.rmtree(store / "_model", ignore_errors=True)  # without an export, search loads the model the manifest names
    marker = tmp_path / "pwned"
    evil_pickle(checkpoint / "model.pt", marker)
    manifest = json.loads((store / "_manifest.json").read_text())
    manifest["model"]["spec"] = str(checkpoint)
    (store / "_manifest.json").write_text(json.dumps(manifest))
    done = cli.run("search", outside_query(gallery, tmp_path), "--store", store)
    one_error_line(done, 4, "contains pickle files")
    manifest["model"]["spec"] = "__import__('os').system('touch " + str(marker) + "')"
    (store / "_manifest.json").write_text(json.dumps(manifest))
    done = cli.run("search", outside_query(gallery, tmp_path), "--store", store)
    assert done.code == 4 and "Traceback" not in done.err, done.err
    assert not marker.exists()
