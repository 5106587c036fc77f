"""Peak memory of a command and every process it starts (DataLoader workers included), from /proc."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from _common import vecmetric_command


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                kids += [int(c) for c in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
            except OSError:
                continue
    except OSError:
        pass
    return kids


def process_tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += _children(p)
    return out


def _kib(path: str, *keys: str) -> dict[str, int]:
    found: dict[str, int] = {}
    try:
        with open(path) as fh:
            for line in fh:
                key = line.split(":", 1)[0]
                if key in keys:
                    found[key] = int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return found


class TreeSampler(threading.Thread):
    """Samples a process tree until stopped, keeping peaks in KiB.

    Attributes:
        peak_rss, peak_pss: the largest sums over the tree at one moment (PSS counts shared pages once).
        hwm: each process's own VmHWM (kernel high-water mark), as last seen.
        max_procs: the most processes seen at once.
    """

    def __init__(self, pid: int, interval: float = 0.05):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_rss = self.peak_pss = self.max_procs = 0
        self.hwm: dict[int, int] = {}
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            pids = process_tree(self.pid)
            rss = pss = 0
            for p in pids:
                status = _kib(f"/proc/{p}/status", "VmRSS", "VmHWM")
                rss += status.get("VmRSS", 0)
                pss += _kib(f"/proc/{p}/smaps_rollup", "Pss").get("Pss", 0)
                if "VmHWM" in status:
                    self.hwm[p] = max(self.hwm.get(p, 0), status["VmHWM"])
            self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
            self.max_procs = max(self.max_procs, len(pids))
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def run_measured(args: list[str], cwd: Path, interval: float = 0.05) -> dict:
    """Run ``vecmetric ARGS``: wall time, peaks (MB) and the last JSON line it printed.

    Raises:
        SystemExit: the command failed (its stderr's tail is in the message).
    """
    cmd = [*vecmetric_command(), *args]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=cwd, env=env)
        sampler = TreeSampler(proc.pid, interval)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        sampler.stop()
        code = os.waitstatus_to_exitcode(status)
        proc.returncode = code
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if code != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({code}):\n{stderr[-3000:]}")
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    workers = [v for p, v in sampler.hwm.items() if p != proc.pid]
    return {
        "seconds": seconds,
        "main_peak_mb": max(usage.ru_maxrss, sampler.hwm.get(proc.pid, 0)) / 1024,
        "worker_peak_mb": max(workers) / 1024 if workers else 0.0,
        "tree_rss_mb": sampler.peak_rss / 1024,
        "tree_pss_mb": sampler.peak_pss / 1024,
        "procs": sampler.max_procs,
        "summary": json.loads(lines[-1]) if lines else {},
    }
