"""`vecmetric train --devices 2` started the way a cluster starts it: by torchrun, and by SLURM's srun
(its environment contract, one process per task), on two CPU processes; README "Scaling out" shows
the commands. Lightning Fabric then launches nothing itself and joins the processes it is given.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
from _helpers import TINY_MODEL, make_class_folders

FAST = ["--model", TINY_MODEL, "--image-size", "32", "--batch-size", "8", "--m-per-class", "2", "--epochs", "1", "--device", "cpu"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def train_args(data, run_dir) -> list[str]:
    return ["--verbose", "train", str(data), "--out", str(run_dir), *FAST, "--devices", "2", "--num-nodes", "1"]


def by_torchrun(data, run_dir, tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2"]
    command += ["--master-addr", "127.0.0.1", "--master-port", str(free_port()), "-m", "vecmetric", *train_args(data, run_dir)]
    command += ["--val-classes", "class_04,class_05", "--workers", "0", "--json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=400, cwd=tmp_path)
    return done.returncode, done.stdout, done.stderr


def by_slurm_tasks(data, run_dir, tmp_path):
    """What ``srun --ntasks-per-node 2 vecmetric train ...`` starts: two processes, SLURM's variables set."""
    port = free_port()
    procs = []
    for rank in range(2):
        env = dict(os.environ, SLURM_NTASKS="2", SLURM_NTASKS_PER_NODE="2", SLURM_NNODES="1", SLURM_PROCID=str(rank))
        env.update(SLURM_LOCALID=str(rank), SLURM_NODEID="0", SLURM_JOB_NAME="vecmetric-train", SLURM_JOB_ID="4242")
        env.update(SLURM_NODELIST="localhost", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        command = [sys.executable, "-m", "vecmetric", *train_args(data, run_dir), "--val-classes", "class_04,class_05", "--workers", "0", "--json"]
        procs.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path))
    outputs = [p.communicate(timeout=400) for p in procs]
    code = max(abs(p.returncode) for p in procs)
    return code, "".join(out for out, _ in outputs), "".join(err for _, err in outputs)


@pytest.mark.slow
@pytest.mark.parametrize("launch", [by_torchrun, by_slurm_tasks], ids=["torchrun", "srun"])
def test_ddp_started_by_a_cluster_launcher(tmp_path, launch):
    data = make_class_folders(tmp_path / "data", per_class=6)
    code, out, err = launch(data, tmp_path / "run", tmp_path)
    assert code == 0, err[-3000:]
    assert err.count("MEMBER: 1/2") == 1 and err.count("MEMBER: 2/2") == 1  # the two launched ranks, one group, no more
    lines = out.strip().splitlines()
    assert len(lines) == 1, out  # one summary, from rank zero
    assert json.loads(lines[0])["best_epoch"] == 1
    state = json.loads((tmp_path / "run" / "last" / "state.json").read_text())
    assert [row["step"] for row in state["history"]] == [0, 1]  # 24 images // (8 x 2 ranks): one step an epoch
