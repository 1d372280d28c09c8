"""Shared fixtures: an isolated model cache per test session and a small local Ray."""
from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Base models trained by tests go to a temporary cache, never the user's."""
    old = os.environ.get("LCP_TUNE_CACHE")
    os.environ["LCP_TUNE_CACHE"] = str(tmp_path_factory.mktemp("lcp-cache"))
    yield
    if old is None:
        os.environ.pop("LCP_TUNE_CACHE", None)
    else:
        os.environ["LCP_TUNE_CACHE"] = old


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
