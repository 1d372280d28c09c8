"""A search on a two-node Ray cluster started with `ray start` on 127.0.0.1, cleaned up after."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from lcp_tune.config import ExperimentConfig
from lcp_tune.run.search import RunOptions, run_search_experiment

pytestmark = [pytest.mark.ray, pytest.mark.slow]
CLUSTER_FILE = Path("/tmp/ray/ray_current_cluster")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def processes_mentioning(text: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if text in (proc / "cmdline").read_bytes().decode(errors="ignore"):
                    pids.append(int(proc.name))
            except OSError:
                pass
    return [p for p in pids if p != os.getpid()]


@pytest.fixture
def two_node_cluster(tmp_path):
    import ray

    if ray.is_initialized():
        ray.shutdown()
    temp_dir = Path("/tmp") / f"lcp-cluster-{os.getpid()}"   # short: Ray's socket paths have a limit
    port = free_port()
    env = dict(os.environ, RAY_AUTH_MODE="token")
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats"]
    subprocess.run(["ray", "start", "--head", f"--port={port}", "--include-dashboard=false",
                    f"--temp-dir={temp_dir}", *common], check=True, env=env, capture_output=True)
    try:
        subprocess.run(["ray", "start", f"--address=127.0.0.1:{port}", *common], check=True, env=env,
                       capture_output=True)
        yield f"127.0.0.1:{port}"
    finally:
        if ray.is_initialized():
            ray.shutdown()
        for pid in processes_mentioning(str(temp_dir)):   # this cluster only, not other Ray users
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        CLUSTER_FILE.unlink(missing_ok=True)
        time.sleep(1)
        assert processes_mentioning(str(temp_dir)) == []
        assert not CLUSTER_FILE.exists()


def test_search_runs_on_a_two_node_loopback_cluster(tmp_path, two_node_cluster):
    import pandas as pd

    config = ExperimentConfig().replace(**{
        "arch": "resnet20_tiny", "prune.budget": 0.4, "search.num_samples": 4, "search.tau_hat": 10,
        "search.report_every": 5, "search.bn_batches": 2, "base_train.epochs": 2, "finetune.epochs": 1})
    lines: list[str] = []
    report = run_search_experiment(config, tmp_path / "exp", lines.append,
                                   RunOptions(address=two_node_cluster))
    assert any("connected to the Ray cluster" in line and "2 CPU" in line for line in lines)
    assert report["num_trials"] == 4 and report["failed_trials"] == 0
    trials = pd.read_parquet(tmp_path / "exp" / "trials.parquet")
    assert len(trials) == 4
    assert trials["val_loss"].notna().all()
