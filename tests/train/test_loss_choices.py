"""Every ``--loss`` (and the hyperbolic head) trains; proxies resume bit-identically; combinations that mean nothing are refused."""

from __future__ import annotations

import json

import pytest
import torch
from _helpers import RecordingReporter, fast_options, make_class_folders, make_tinted_noise_classes
from safetensors.torch import load_file

from vecmetric.errors import TrainError
from vecmetric.train import TrainOptions, train
from vecmetric.train.losses import LOSSES

CONFIGS = [pytest.param({"loss": name}, id=name) for name in LOSSES] + [
    pytest.param({"loss": "supcon", "geometry": "hyperbolic"}, id="hyperbolic-supcon"),
    pytest.param({"loss": "triplet", "geometry": "hyperbolic", "margin": 0.5}, id="hyperbolic-triplet"),
]


def tensors_equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("config", CONFIGS)
def test_each_loss_lowers_its_loss_and_raises_validation_map_at_r(tmp_path, config):
    """Tinted-noise classes (``make_tinted_noise_classes``): untrained features score MAP@R about 0.2 on the 4 held-out
    colours; every loss must lower its training loss and raise that by 0.2 within 5 epochs. A broken loss (or a frozen
    model, below) leaves it where it was."""
    data = make_tinted_noise_classes(tmp_path / "data")
    options = fast_options(epochs=5, embedding_dim=16, val_classes="class_01,class_04,class_07,class_10", lr=1e-3, head_lr=1e-3,
                           flip=False, batch_size=16, m_per_class=4, **config)
    result = train(data, tmp_path / "run", options, RecordingReporter())
    before = result.history[0]["mean_average_precision_at_r"]
    best = max(row["mean_average_precision_at_r"] for row in result.history[1:])
    assert before < 0.3
    assert best >= before + 0.2, result.history
    first, last = result.history[1], result.history[-1]
    if config["loss"] in ("triplet", "contrastive"):
        # Averaged over the triplets or pairs that still violate their margin, these losses need not fall (the easy
        # ones leave the mean, and contrastive's rose from 0.905 to 0.927 here while MAP@R rose by 0.5): what falls
        # is how many triplets are active (margin-violating for triplet, ranked the wrong way round otherwise).
        assert last["active_triplets"] < 0.7 * first["active_triplets"], result.history
    else:
        assert last["loss"] < first["loss"], result.history


def test_a_frozen_model_with_frozen_proxies_does_not_pass(tmp_path):
    data = make_tinted_noise_classes(tmp_path / "data")
    options = fast_options(epochs=5, embedding_dim=16, val_classes="class_01,class_04,class_07,class_10", lr=1e-12, head_lr=1e-12,
                           proxy_lr=1e-12, flip=False, batch_size=16, m_per_class=4, loss="proxy-anchor")
    result = train(data, tmp_path / "run", options, RecordingReporter())
    before = result.history[0]["mean_average_precision_at_r"]
    assert max(row["mean_average_precision_at_r"] for row in result.history[1:]) < before + 0.05


@pytest.mark.parametrize("loss", ["proxy-anchor", "normalized-softmax"])
def test_proxies_are_saved_and_resumed_bit_identically(tmp_path, loss):
    data = make_class_folders(tmp_path / "data")
    options = dict(epochs=2, embedding_dim=8, loss=loss)
    straight = train(data, tmp_path / "straight", fast_options(**options), RecordingReporter())
    with pytest.raises(KeyboardInterrupt):
        train(data, tmp_path / "resumed", fast_options(**options), RecordingReporter(interrupt_after=1))
    after_one = load_file(tmp_path / "resumed" / "last" / "loss.safetensors")
    resumed = train(data, tmp_path / "resumed", fast_options(**options, resume=True), RecordingReporter())
    assert resumed.resumed_from_epoch == 1
    for name in ("last/loss.safetensors", "last/model.safetensors", "last/optimizer.safetensors", "model.safetensors"):
        assert tensors_equal(load_file(tmp_path / "straight" / name), load_file(tmp_path / "resumed" / name)), name
    final = load_file(tmp_path / "straight" / "last" / "loss.safetensors")
    assert not tensors_equal(after_one, final)  # the proxies did learn in epoch 2 (and were restored before it)
    assert next(iter(final.values())).numel() == 8 * 4  # 4 training classes x 8 dimensions
    assert [r.get("loss") for r in resumed.history] == [r.get("loss") for r in straight.history]
    args = json.loads((tmp_path / "straight" / "run.json").read_text())["args"]
    assert args["loss"] == loss and args["proxy_lr"] == pytest.approx(100 * 1e-3)


def test_another_loss_cannot_resume_a_run(copy_run):
    data, run = copy_run
    with pytest.raises(TrainError, match=r"holds a run of --loss multi-similarity, not supcon") as info:
        train(data, run, fast_options(epochs=2, embedding_dim=16, loss="supcon", resume=True), RecordingReporter())
    assert info.value.exit_code == 7 and "\n" not in str(info.value)


def test_a_run_folder_from_before_loss_existed_resumes_as_triplet(tmp_path):
    data = make_class_folders(tmp_path / "data")
    run = tmp_path / "run"
    train(data, run, fast_options(epochs=2, loss="triplet"), RecordingReporter())
    path = run / "run.json"
    written = json.loads(path.read_text())
    for key in ("loss", "geometry", "curvature", "temperature", "proxy_lr"):  # what run.json held before --loss
        written["args"].pop(key)
    path.write_text(json.dumps(written))
    done = train(data, run, fast_options(epochs=2, loss="triplet", resume=True), RecordingReporter())
    assert done.resumed_from_epoch == 2
    with pytest.raises(TrainError, match=r"holds a run of --loss triplet, not multi-similarity"):
        train(data, run, fast_options(epochs=2, resume=True), RecordingReporter())  # today's default loss


@pytest.mark.parametrize(
    "options, match",
    [
        ({"loss": "arcface"}, "unknown --loss 'arcface'.*triplet, multi-similarity, contrastive, proxy-anchor, normalized-softmax, supcon"),
        ({"geometry": "spherical"}, "unknown --geometry 'spherical'.*euclidean, hyperbolic"),
        ({"geometry": "hyperbolic", "curvature": -0.1}, "--curvature must be positive, not -0.1"),
        ({"geometry": "hyperbolic", "curvature": 0.0}, "--curvature must be positive, not 0"),
        ({"curvature": 0.1}, "--curvature applies to --geometry hyperbolic only"),
        ({"loss": "supcon", "miner": "semihard"}, "--loss supcon takes no --miner"),
        ({"loss": "proxy-anchor", "miner": "all"}, "--loss proxy-anchor takes no --miner"),
        ({"loss": "multi-similarity", "miner": "semihard"}, "unknown --miner 'semihard' for --loss multi-similarity.*multi-similarity, all"),
        ({"loss": "supcon", "margin": 0.1}, "--loss supcon has no margin"),
        ({"loss": "multi-similarity", "margin": 0.1}, "--loss multi-similarity has no margin"),
        ({"loss": "normalized-softmax", "margin": 0.1}, "--loss normalized-softmax has no margin"),
        ({"loss": "triplet", "temperature": 0.1}, "--loss triplet has no temperature"),
        ({"loss": "supcon", "proxy_lr": 0.1}, "--loss supcon has no proxies"),
        ({"loss": "proxy-anchor", "metric": "l2"}, "--loss proxy-anchor works with --metric cosine, not l2"),
        ({"loss": "proxy-anchor", "geometry": "hyperbolic"}, "--loss proxy-anchor does not work with --geometry hyperbolic.*triplet, contrastive, supcon"),
        ({"geometry": "hyperbolic", "metric": "cosine"}, "--metric cosine applies to --geometry euclidean"),
        ({"metric": "poincare"}, "unknown --metric 'poincare'.*--geometry hyperbolic"),
        ({"loss": "supcon", "temperature": 0.0}, "--temperature must be positive"),
        ({"loss": "triplet", "margin": -1.0}, "--margin must be >= 0"),
    ],
)
def test_options_that_mean_nothing_are_refused(options, match):
    with pytest.raises(TrainError, match=match) as info:
        TrainOptions(**options).validate()
    assert info.value.exit_code == 7 and "\n" not in str(info.value)


def test_defaults_are_filled_per_loss():
    options = TrainOptions()
    options.validate()
    assert (options.loss, options.miner) == ("multi-similarity", "multi-similarity")  # the measured winner
    for metric, geometry, loss in (("l2", "euclidean", "triplet"), (None, "hyperbolic", "supcon")):
        options = TrainOptions(metric=metric, geometry=geometry)
        options.validate()
        assert options.loss == loss
    cases = {
        "triplet": ("cosine", "semihard", 0.2, None, None),
        "multi-similarity": ("cosine", "multi-similarity", None, None, None),
        "contrastive": ("cosine", "all", 0.0, None, None),
        "proxy-anchor": ("cosine", None, 0.1, None, 100 * 1e-4),
        "normalized-softmax": ("cosine", None, None, 0.05, 100 * 1e-4),
        "supcon": ("cosine", None, None, 0.1, None),
    }
    for loss, expected in cases.items():
        options = TrainOptions(loss=loss)
        options.validate()
        assert (options.metric, options.miner, options.margin, options.temperature, options.proxy_lr) == pytest.approx(expected), loss
    options = TrainOptions(loss="contrastive", metric="l2")
    options.validate()
    assert options.margin == 1.0
    options = TrainOptions(loss="supcon", geometry="hyperbolic")
    options.validate()
    assert (options.metric, options.curvature, options.temperature) == ("poincare", 0.1, 0.2)
