"""A real two-node Ray cluster, started with Ray's own `ray start` (token authentication on, as
Ray 2.60 defaults) inside a loopback-only network namespace, and lcp-tune pointed at it the way
users do: `--address`, with and without RAY_AUTH_MODE in the client's environment."""
from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest
from test_resume import trained_base

pytestmark = [pytest.mark.ray, pytest.mark.slow]
PORT = 6391   # the namespace is new: nothing else listens in it


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


def client_env(auth_mode: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    return {**env, "RAY_AUTH_MODE": "token"} if auth_mode else env


@pytest.fixture
def two_node_cluster(loopback_namespace):
    """`ray start` head and worker (1 CPU each) on 127.0.0.1 inside the namespace; stopped after
    by killing this cluster's processes only (never `ray stop`, which stops every Ray here)."""
    temp_dir = Path("/tmp") / f"lcp-cluster-{os.getpid()}"   # short: Ray's socket paths have a limit
    env = dict(client_env(False), RAY_AUTH_MODE="token")
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats"]
    try:
        for args in (["--head", f"--port={PORT}", "--include-dashboard=false", f"--temp-dir={temp_dir}"],
                     [f"--address=127.0.0.1:{PORT}"]):
            started = loopback_namespace.run(["ray", "start", *args, *common], env=env, timeout=180)
            assert started.returncode == 0, started.stdout + started.stderr
        yield loopback_namespace, f"127.0.0.1:{PORT}"
    finally:
        for pid in processes_mentioning(str(temp_dir)):   # this cluster only, not other Ray users
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(1)
        assert processes_mentioning(str(temp_dir)) == []


def test_search_runs_on_a_two_node_cluster_started_by_ray_start(tmp_path, two_node_cluster):
    """The user's command, RAY_AUTH_MODE not exported: the token is found where Ray keeps it and
    the trials run on both nodes, every Ray address on loopback."""
    import pandas as pd

    namespace, address = two_node_cluster
    exp = tmp_path / "exp"
    search = namespace.run([sys.executable, "-m", "lcp_tune.cli", "search", "--arch", "resnet20_tiny", "--checkpoint", trained_base(tmp_path), "--budget", "0.4",
                            "--num-samples", "4", "--tau-hat", "10", "--finetune-epochs", "1",
                            "--race", "0", "--address", address, "--out", exp], env=client_env(False), timeout=900)
    assert search.returncode == 0, search.stdout[-3000:] + search.stderr[-3000:]
    assert "connected to the Ray cluster" in search.stdout and "2 CPU" in search.stdout, search.stdout
    report = json.loads((exp / "report.json").read_text())
    assert report["num_trials"] == 4 and report["failed_trials"] == 0
    trials = pd.read_parquet(exp / "trials.parquet")
    assert len(trials) == 4 and trials["val_loss"].notna().all()
    nodes = {json.loads(line).get("node_ip") for p in (exp / "search").glob("trial_*/result.json")
             for line in p.read_text().splitlines() if line.strip()}
    assert nodes == {"127.0.0.1"}, nodes   # no trial ran on, or reported, a routable address


def test_a_client_with_ray_auth_mode_exported_connects_too_and_one_without_the_token_is_told_where(
        two_node_cluster, tmp_path):
    namespace, address = two_node_cluster
    probe = ("import ray; from lcp_tune.tune.cluster import init_ray; init_ray(address=%r); "
             "print(sorted(n['NodeManagerAddress'] for n in ray.nodes() if n['Alive']))" % address)
    for exported in (True, False):
        ran = namespace.run([sys.executable, "-c", probe], env=client_env(exported), timeout=180)
        assert ran.returncode == 0, ran.stderr[-2000:]
        assert ran.stdout.strip().splitlines()[-1] == "['127.0.0.1', '127.0.0.1']", ran.stdout
    # no token where Ray looks (another HOME, no RAY_AUTH_TOKEN): one line naming the three places
    lonely = dict(client_env(False), HOME=str(tmp_path))
    probe = ("from lcp_tune.errors import LcpTuneError; from lcp_tune.tune.cluster import init_ray\n"
             "try:\n    init_ray(address=%r)\nexcept LcpTuneError as exc:\n    print('REFUSED', exc)" % address)
    ran = namespace.run([sys.executable, "-c", probe], env=lonely, timeout=300)
    last = ran.stdout.strip().splitlines()[-1]
    assert last.startswith("REFUSED cannot connect to the Ray cluster"), ran.stdout + ran.stderr[-2000:]
    assert "~/.ray/auth_token" in last and "RAY_AUTH_TOKEN" in last and "RAY_AUTH_TOKEN_PATH" in last, last
