"""`--dashboard`: local Ray's dashboard answers on 127.0.0.1 and refuses requests without the token."""
from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ray]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, token: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_dashboard_on_loopback_with_token_auth():
    import ray

    from lcp_tune.tune.cluster import init_ray

    if ray.is_initialized():
        ray.shutdown()
    port = free_port()
    lines: list[str] = []
    init_ray(num_cpus=1, dashboard=True, dashboard_port=port, log=lines.append)
    try:
        url = f"http://127.0.0.1:{port}/api/version"
        assert any(f"http://127.0.0.1:{port}" in line and "token" in line for line in lines)
        deadline = time.time() + 30
        while get(url) not in (200, 401) and time.time() < deadline:
            time.sleep(0.5)
        assert get(url) == 401                     # no token: refused
        token = (Path.home() / ".ray" / "auth_token").read_text().strip()
        assert get(url, token) == 200              # with the token: answers
        with socket.socket() as s:                 # bound to loopback only
            s.settimeout(2)
            external = socket.gethostbyname(socket.gethostname())
            if not external.startswith("127."):
                assert s.connect_ex((external, port)) != 0
    finally:
        ray.shutdown()
