"""`vecmetric train`: a real tiny run, every bad input as one error line with its exit code, --help."""

import json
import re
import sys

import pytest
from _helpers import TINY_MODEL, make_class_folders, one_error_line
from typer.testing import CliRunner

from vecmetric.cli._app import app

FAST = ["--model", TINY_MODEL, "--image-size", "32", "--batch-size", "8", "--m-per-class", "2", "--epochs", "1", "--device", "cpu", "--no-export"]


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """A finished run made through the CLI, on data holding a broken image and a single-image class."""
    base = tmp_path_factory.mktemp("cli_train")
    data = make_class_folders(base / "data")
    (data / "class_00" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (data / "lonely").mkdir()
    (data / "class_01" / "img_00.png").rename(data / "lonely" / "img_00.png")
    result = run("train", data, "--out", base / "run", *FAST, "--val-classes", "class_04,class_05", "--workers", "1", "--json")
    return data, base / "run", result


def test_train_prints_one_json_result_and_warns_about_what_it_skipped(cli_run):
    data, run_dir, result = cli_run
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    summary = json.loads(lines[0])
    assert summary["run_dir"] == str(run_dir) and summary["best_epoch"] == 1
    assert 0.0 <= summary["mean_average_precision_at_r"] <= 1.0 and summary["train_images_per_s"] > 0
    assert "Warning: skipped 1 unreadable image(s)" in result.stderr and "broken.jpg" in result.stderr
    assert re.search(r"Warning: skipped 1 class\(es\) with a single image.*lonely", result.stderr)
    assert "epoch 1" in result.stderr and "MAP@R" in result.stderr
    assert re.search(r"keeping 15 decoded training images in memory \(0\.\d MB\)", result.stderr)
    assert (run_dir / "config.json").is_file() and (run_dir / "curves.png").is_file()


def test_train_table_output_and_resume_of_a_finished_run(cli_run):
    data, run_dir, _ = cli_run
    result = run("train", data, "--out", run_dir, *FAST, "--val-classes", "class_04,class_05", "--resume")
    assert result.exit_code == 0, result.stderr
    assert "best epoch 1" in result.stdout and "MAP@R" in result.stdout


def test_run_dir_holding_a_different_run(cli_run):
    data, run_dir, _ = cli_run
    result = run("train", data, "--out", run_dir, *FAST, "--val-classes", "class_04,class_05", "--loss", "supcon", "--resume")
    one_error_line(result, 7, pattern=r"holds a run of --loss multi-similarity, not supcon \(.*resume it with --loss multi-similarity\)")
    result = run("train", data, "--out", run_dir, *FAST, "--val-classes", "class_04,class_05", "--seed", "3")
    one_error_line(result, 7, pattern=r"holds a different run \(seed 0 -> 3\)")
    result = run("train", data, "--out", run_dir, *FAST, "--val-classes", "class_04,class_05")
    one_error_line(result, 7, pattern="already holds this run.*--resume")


@pytest.mark.parametrize(
    "classes, per_class, extra, code, pattern",
    [
        (1, 4, [], 7, "1 usable class.*at least 2"),
        (3, 1, [], 7, "0 usable class"),
        (6, 3, ["--m-per-class", "4", "--val-classes", "0"], 7, "--m-per-class 4 is larger than 6 training class"),
        (6, 4, ["--miner", "random"], 7, "unknown --miner 'random' for --loss multi-similarity.*multi-similarity, all"),
        (6, 4, ["--loss", "triplet", "--miner", "random"], 7, "unknown --miner 'random' for --loss triplet.*semihard"),
        (6, 4, ["--margin", "0.3"], 7, "--loss multi-similarity has no margin"),
        (6, 4, ["--val-classes", "1.5"], 7, "--val-classes 1.5"),
        (6, 4, ["--cache", "disk"], 7, "unknown --cache 'disk'.*auto, ram, off"),
        (6, 4, ["--loss", "arcface"], 7, "unknown --loss 'arcface'.*triplet, multi-similarity"),
        (6, 4, ["--geometry", "spherical"], 7, "unknown --geometry 'spherical'.*euclidean, hyperbolic"),
        (6, 4, ["--geometry", "hyperbolic", "--curvature", "-1"], 7, "--curvature must be positive, not -1.*Gaussian curvature is -c"),
        (6, 4, ["--geometry", "hyperbolic", "--curvature", "0"], 7, "--curvature must be positive, not 0"),
        (6, 4, ["--loss", "supcon", "--miner", "semihard"], 7, "--loss supcon takes no --miner"),
        (6, 4, ["--loss", "supcon", "--margin", "0.3"], 7, "--loss supcon has no margin"),
        (6, 4, ["--loss", "normalized-softmax", "--margin", "0.3"], 7, "--loss normalized-softmax has no margin"),
        (6, 4, ["--loss", "proxy-anchor", "--geometry", "hyperbolic"], 7, "--loss proxy-anchor does not work with --geometry hyperbolic"),
        (6, 4, ["--model", "timm:no_such_model_xyz"], 4, "unknown timm model"),
    ],
)
def test_bad_input_is_one_error_line_with_its_exit_code(tmp_path, classes, per_class, extra, code, pattern):
    data = make_class_folders(tmp_path / "data", classes=classes, per_class=per_class)
    result = run("train", data, "--out", tmp_path / "run", *FAST, *extra)  # a repeated option's last value wins
    one_error_line(result, code, pattern=pattern)


def test_missing_data_folder_is_an_input_error(tmp_path):
    result = run("train", tmp_path / "nope", "--out", tmp_path / "run", *FAST)
    one_error_line(result, 3, "does not exist")


def test_help_documents_every_option_with_its_default():
    result = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "250", "TERM": "dumb"})
    assert result.exit_code == 0
    text = result.stdout
    for option in ("--out", "--model", "--embedding-dim", "--loss", "--metric", "--geometry", "--curvature", "--margin", "--miner",
                   "--temperature", "--proxy-lr", "--m-per-class", "--batch-size",
                   "--val-classes", "--epochs", "--lr", "--head-lr", "--warmup", "--freeze-backbone-epochs", "--freeze-bn", "--image-size",
                   "--flip", "--seed", "--workers", "--cache", "--device", "--devices", "--num-nodes", "--precision", "--resume", "--json"):
        assert option in text, option
    rows = [line for line in text.splitlines() if re.search(r"│\s+(\*\s+)?--", line)]
    undocumented = [row.split()[1] for row in rows if "[default:" not in row and "[required]" not in row]
    assert undocumented == ["--json", "--help"]


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_reports_once_and_writes_a_usable_model(tmp_path):
    """`--devices 2` on the CPU: Lightning launches a second process (gloo); only rank zero reports and writes."""
    import subprocess

    data = make_class_folders(tmp_path / "data", per_class=6)
    (data / "class_00" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    command = [sys.executable, "-m", "vecmetric", "--verbose", "train", str(data), "--out", str(tmp_path / "run"), *FAST]
    command += ["--devices", "2", "--val-classes", "class_04,class_05", "--workers", "0", "--json"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MEMBER: 2/2" in result.stderr  # two processes really trained (Lightning says so with --verbose)
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout  # one summary, from rank zero
    assert json.loads(lines[0])["best_epoch"] == 1
    assert result.stderr.count("skipped 1 unreadable image(s)") == 1  # warned once, not once per rank
    state = json.loads((tmp_path / "run" / "last" / "state.json").read_text())
    # Each rank takes every other global batch: 24 training images // (batch 8 x 2 ranks) = 1 step per epoch.
    assert [row["step"] for row in state["history"]] == [0, 1]
    from vecmetric.encoders import load_encoder

    encoder = load_encoder(str(tmp_path / "run"), device="cpu")
    assert encoder.dim == 256
