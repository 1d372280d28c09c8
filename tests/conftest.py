"""Shared fixtures: an isolated model cache per test session and a small local Ray."""
from __future__ import annotations

import os

import pytest


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
