"""Shared fixtures: an isolated model cache per test session and a small local Ray."""
from __future__ import annotations

import os

import pytest


# what makes a test slow: a Ray instance, a cluster, a subprocess or a whole search or fine-tune
SLOW_FIXTURES = {"local_ray", "loopback_namespace", "two_node_cluster", "finished_search"}
SLOW_CALLS = ("run_search_experiment", "resume_search_experiment", "finetune_many", "subprocess", "stop_when",
              "sys.executable", "trained_base", "paper_table", "ray_session",
              "init_ray", "run_budgets", "Tuner(")


def pytest_collection_modifyitems(config, items):
    """Mark `slow` every test that starts Ray or a subprocess or runs a search, read from its
    fixtures and its source, so the default run (`-m 'not slow'`) stays the inner loop."""
    import inspect

    for item in items:
        if item.get_closest_marker("slow"):
            continue
        try:
            source = inspect.getsource(item.function)
        except (OSError, TypeError, AttributeError):
            source = ""
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())) or any(call in source for call in SLOW_CALLS):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Base models trained by tests go to a temporary cache, and the signing key to a temporary
    file, never the user's."""
    old = {name: os.environ.get(name) for name in ("LCP_TUNE_CACHE", "LCP_TUNE_KEY")}
    os.environ["LCP_TUNE_CACHE"] = str(tmp_path_factory.mktemp("lcp-cache"))
    os.environ["LCP_TUNE_KEY"] = str(tmp_path_factory.mktemp("lcp-key") / "signing.key")
    yield
    for name, value in old.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="module")
def local_ray():
    """A 2-CPU local Ray for the module's tests, shut down after them."""
    import ray

    from lcp_tune.tune.cluster import init_ray

    if ray.is_initialized():
        ray.shutdown()
    init_ray(num_cpus=2)
    yield ray
    ray.shutdown()


class LoopbackNamespace:
    """A network namespace that holds only loopback, kept open by a sleeping process; every
    command run through it (`nsenter --net`) binds and connects inside it, so Ray, which rewrites
    127.0.0.1 to the machine's routable address elsewhere, resolves its node address to 127.0.0.1
    and nothing can reach an address outside 127.0.0.0/8."""

    def __init__(self, holder):
        self.holder = holder
        self.net = f"/proc/{holder.pid}/ns/net"

    def command(self, args: list) -> list:
        return ["nsenter", f"--net={self.net}", *[str(a) for a in args]]

    def run(self, args: list, **kwargs):
        import subprocess

        return subprocess.run(self.command(args), **{"capture_output": True, "text": True, **kwargs})


@pytest.fixture
def loopback_namespace():
    """A loopback-only network namespace for multi-node Ray tests; skipped, with the reason,
    where this user may not create one (it needs root, `unshare` and `nsenter`)."""
    import shutil
    import subprocess

    if os.geteuid() != 0 or not (shutil.which("unshare") and shutil.which("nsenter") and shutil.which("ip")):
        pytest.skip("a loopback-only network namespace needs root with unshare, nsenter and ip")
    holder = subprocess.Popen(["unshare", "-n", "sh", "-c", "ip link set lo up && echo ready && exec sleep 86400"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if holder.stdout.readline().strip() != "ready":
        holder.kill()
        pytest.skip(f"cannot create a network namespace here: {holder.stderr.read().strip()[:200]}")
    try:
        yield LoopbackNamespace(holder)
    finally:
        holder.kill()
        holder.wait()



@pytest.fixture(scope="module")
def finished_search(tmp_path_factory, local_ray):
    """A finished 3-trial search whose folder hostile tests copy and damage (one per module, on
    its Ray, so the commands those tests run reuse that Ray)."""
    from lcp_tune.config import ExperimentConfig
    from lcp_tune.run.search import run_search_experiment

    config = ExperimentConfig().replace(**{
        "arch": "resnet20_tiny", "prune.budget": 0.4, "search.num_samples": 3, "search.tau_hat": 4,
        "search.report_every": 2, "search.bn_batches": 1, "base_train.epochs": 1, "finetune.epochs": 1})
    root = tmp_path_factory.mktemp("hostile") / "exp"
    run_search_experiment(config, root, log=lambda line: None)
    return root


@pytest.fixture()
def payload_module(tmp_path, monkeypatch):
    """An importable module whose import creates a marker; its name is unique per test."""
    name = f"lcp_payload_{tmp_path.name.replace('-', '_')}"
    marker = tmp_path / "marker"
    from hostile_helpers import PAYLOAD_MODULE

    (tmp_path / f"{name}.py").write_text(PAYLOAD_MODULE.format(marker=str(marker)))
    monkeypatch.syspath_prepend(str(tmp_path))
    return f"{name}:make", marker
